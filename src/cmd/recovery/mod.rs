//! The `recovery` subcommands: parsing results rendered as text or JSON.
