//! AWS backend tests (being written).
