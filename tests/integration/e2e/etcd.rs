//! End-to-end runs of the etcd runbooks (being written).
