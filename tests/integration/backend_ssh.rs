//! SSH and etcd backend tests (being written).
