//! Engine errors as gRPC statuses: the one place a SQLSTATE becomes a gRPC code. The message
//! keeps the SQLSTATE, so a Flight client sees the same condition a Postgres client would.

use arrow_flight::error::FlightError;
use streamhouse_engine::EngineError;
use tonic::{Code, Status};

/// The gRPC code for a SQLSTATE, by its class (the first two characters) where the class says
/// enough, by the whole code where it does not.
pub fn code_for_sqlstate(sqlstate: &str) -> Code {
    match sqlstate {
        "42P01" | "34000" | "26000" => Code::NotFound,
        "42P07" | "42P03" => Code::AlreadyExists,
        "57014" => Code::Cancelled,
        "57P01" => Code::Unavailable,
        "0A000" => Code::Unimplemented,
        "42501" => Code::PermissionDenied,
        code if code.starts_with("53") || code.starts_with("54") => Code::ResourceExhausted,
        "08P01" => Code::InvalidArgument,
        code if code.starts_with("42") || code.starts_with("22") || code.starts_with("23") => Code::InvalidArgument,
        code if code.starts_with("2B") => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

/// A status for an engine error: its gRPC code, and its message with the SQLSTATE.
pub fn engine_status(error: &EngineError) -> Status {
    let sqlstate = error.sqlstate();
    Status::new(code_for_sqlstate(sqlstate), format!("{error} (SQLSTATE {sqlstate})"))
}

/// A status for a Flight encoding or decoding error of the client's stream.
pub fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::ExternalError(inner) => match inner.downcast::<EngineError>() {
            Ok(engine) => engine_status(&engine),
            Err(other) => Status::internal(other.to_string()),
        },
        other => Status::invalid_argument(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_grpc_codes() {
        assert_eq!(code_for_sqlstate("42P01"), Code::NotFound);
        assert_eq!(code_for_sqlstate("42601"), Code::InvalidArgument);
        assert_eq!(code_for_sqlstate("22012"), Code::InvalidArgument);
        assert_eq!(code_for_sqlstate("23502"), Code::InvalidArgument);
        assert_eq!(code_for_sqlstate("53000"), Code::ResourceExhausted);
        assert_eq!(code_for_sqlstate("08P01"), Code::InvalidArgument);
        assert_eq!(code_for_sqlstate("26000"), Code::NotFound);
        assert_eq!(code_for_sqlstate("57014"), Code::Cancelled);
        assert_eq!(code_for_sqlstate("XX000"), Code::Internal);
        let status = engine_status(&EngineError::UndefinedTable("nope".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("relation \"nope\" does not exist (SQLSTATE 42P01)"), "{}", status.message());
    }
}
