//! `code_enum!`: one definition of a fieldless enum whose variants are stable
//! wire or register codes, used by this crate and by the service protocol
//! crates.
//!
//! It writes the enum with its `repr`, the list of every variant, the code
//! of a variant and the decoder of a code, so a variant cannot be added to
//! the enum and forgotten in its list or its decoder. The decoder is a
//! `match` over the literal codes (a jump table, not a search), which is
//! what the system call entry needs. This module must never hold anything
//! but the macro.

/// Defines a fieldless enum of stable codes with `ALL` (every variant in
/// declaration order), `code(self)` and `from_code(code) -> Option<Self>`.
///
/// ```
/// alux_abi::code_enum! {
///     /// A colour.
///     pub enum Colour: u8 {
///         /// Red.
///         Red = 1,
///         /// Blue.
///         Blue = 4,
///     }
/// }
/// assert_eq!(Colour::ALL, [Colour::Red, Colour::Blue]);
/// assert_eq!(Colour::from_code(4), Some(Colour::Blue));
/// assert_eq!(Colour::from_code(2), None);
/// assert_eq!(Colour::Red.code(), 1);
/// ```
#[macro_export]
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$( stringify!($variant) ),+].len()] =
                [$( $name::$variant ),+];

            /// The variant's code.
            pub const fn code(self) -> $repr {
                self as $repr
            }

            /// Decodes a code; `None` for a code no variant has.
            pub const fn from_code(code: $repr) -> Option<$name> {
                match code {
                    $( $value => Some($name::$variant), )+
                    _ => None,
                }
            }
        }
    };
}
