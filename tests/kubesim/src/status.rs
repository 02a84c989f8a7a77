//! Kubernetes `Status` errors: every failure the API returns is one of these, rendered the way
//! kube-apiserver renders it so clients (kubectl, kube-rs) print and classify it correctly.

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Injected(String, u16),
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid(_) => 422,
            ApiError::Forbidden(_) => 403,
            ApiError::Gone { .. } => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Injected(_, code) => *code,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid(_) => "Invalid",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Gone { .. } => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Injected(_, 503) => "ServiceUnavailable",
            ApiError::Injected(_, 429) => "TooManyRequests",
            ApiError::Injected(..) => "InternalError",
        }
    }

    /// The `Status` object (kind Status, apiVersion v1) for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        group: group.to_string(),
        resource: qualified(group, resource),
        name: name.to_string(),
    }
}

/// kube-apiserver names a resource `plural.group` in messages (just `plural` for core).
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
    ApiError::AlreadyExists {
        group: group.to_string(),
        resource: qualified(group, resource),
        name: name.to_string(),
    }
}

pub fn conflict(group: &str, resource: &str, name: &str) -> ApiError {
    ApiError::Conflict {
        group: group.to_string(),
        resource: qualified(group, resource),
        name: name.to_string(),
    }
}

/// The `Status` a successful delete of a non-object (collections) returns.
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}
