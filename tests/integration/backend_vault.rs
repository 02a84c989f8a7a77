//! Vault backend tests (being written).
