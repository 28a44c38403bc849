// The link line shared by every user binary.
include!("../link.rs");
