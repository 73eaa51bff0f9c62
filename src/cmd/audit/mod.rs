//! The `audit` subcommands: parsing results rendered as text or JSON.
