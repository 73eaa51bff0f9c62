//! The `lock` subcommands: parsing results rendered as text or JSON.
