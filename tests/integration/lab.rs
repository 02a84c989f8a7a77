//! The lab of real servers for tests (being written).
