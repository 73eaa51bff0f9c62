//! The `state` subcommands: parsing results rendered as text or JSON.
