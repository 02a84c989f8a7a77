//! Kubernetes backend tests (being written).
