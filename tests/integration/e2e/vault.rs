//! End-to-end runs of the vault runbooks (being written).
