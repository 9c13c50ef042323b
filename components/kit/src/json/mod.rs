//! The kit's one JSON access layer: reading a few members out of a JSON
//! text without building a `serde_json::Value`.
//!
//! Why it exists: speed. [`Envelope::decode_json`] is the hottest function of
//! the WebSocket ingest path, and deserialising a serde struct with
//! serde_json cost about twice as much as merely validating the frame. So
//! [`scan`] does both in one pass: it checks the whole input against the
//! JSON grammar and, on the way, notes where the values of a few named
//! members of the top-level object lie, so that the caller can copy or read
//! them without parsing anything again.
//!
//! serde_json remains the reference. [`scan`] accepts exactly what
//! `serde_json::from_slice::<serde::de::IgnoredAny>` accepts on valid UTF-8:
//! RFC 8259, numbers of any magnitude, `\u` escapes not checked for
//! surrogates, and no nesting limit (`IgnoredAny` has none: it skips with a
//! stack on the heap; here open containers are kept one bit per level, and
//! nothing recurses). What is rare is left to serde_json itself: decoding a
//! string that holds escapes ([`Span::string_text`]), and the error message
//! of an invalid input (the caller asks serde_json for it). The property
//! tests in `tests/envelope_props.rs` compare the decoder built on this with
//! the serde-only one.
//!
//! - [`scan()`]: validate a text and find members of its top-level object
//!   ([`Members`], [`Span`]).
//! - [`elements`]: the elements of an array already validated (numbers
//!   of a sample list, rows of a batch), each as its JSON text.
//! - [`small_integer`]: an integer token's value, eight digits at a time.
//! - [`bind_member`]: add a missing top-level member to an object.
//! - [`parse_query`] and [`ValuePath`]: JSONPaths for the whole node, and
//!   the single-value kind that names one value (a stream or row key).
//!
//! [`Envelope::decode_json`]: crate::envelope::Envelope::decode_json

mod bind;
mod elements;
mod lexer;
mod path;
mod scan;
mod span;

pub use bind::{bind_member, Bound};
pub use elements::{elements, numbers, Elements, Numbers};
pub use lexer::small_integer;
pub use path::{parse_query, Step, ValuePath};
pub use scan::{scan, Members};
pub use span::{Invalid, Shape, Span};
