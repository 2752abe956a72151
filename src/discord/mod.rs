//! The Discord port and its serenity adapter.
