use datafusion::error::DataFusionError;
use streamhouse_storage::StorageError;
use thiserror::Error;

/// Errors of the engine. Each maps to a Postgres SQLSTATE through [`EngineError::sqlstate`].
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A type, function or other named object that does not exist (`42704`).
    #[error("{0}")]
    UndefinedObject(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("{0}")]
    UndefinedColumn(String),
    #[error("{0} is not supported")]
    NotSupported(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidDefinition(String),
    #[error("{0}")]
    InvalidText(String),
    #[error("{0}")]
    NotNullViolation(String),
    /// A subquery used as an expression returned more than one row (`21000`).
    #[error("{0}")]
    CardinalityViolation(String),
    /// A LIKE pattern or escape string PostgreSQL refuses (`22025`).
    #[error("{0}")]
    InvalidEscapeSequence(String),
    #[error("{0}")]
    DivisionByZero(String),
    #[error("{0}")]
    NumericOutOfRange(String),
    #[error("{0}")]
    DataException(String),
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// A statement needs more memory than its limit allows (PostgreSQL's `53200`).
    #[error("{0}")]
    OutOfMemory(String),
    /// A statement nested deeper than the server's threads can plan (PostgreSQL's `54001`).
    #[error("{0}")]
    StackDepthExceeded(String),
    #[error("{0}")]
    PlanError(String),
    #[error("canceling statement due to user request")]
    Canceled,
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
    /// An error whose SQLSTATE the front end decides (protocol-level conditions).
    #[error("{message}")]
    Sqlstate { code: &'static str, message: String },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// The Postgres SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EngineError::Syntax(_) => "42601",
            EngineError::UndefinedTable(_) => "42P01",
            EngineError::UndefinedObject(_) => "42704",
            EngineError::DuplicateTable(_) => "42P07",
            EngineError::UndefinedColumn(_) => "42703",
            EngineError::NotSupported(_) => "0A000",
            EngineError::InvalidParameter(_) => "22023",
            EngineError::InvalidDefinition(_) => "42P16",
            EngineError::InvalidText(_) => "22P02",
            EngineError::NotNullViolation(_) => "23502",
            EngineError::InvalidEscapeSequence(_) => "22025",
            EngineError::CardinalityViolation(_) => "21000",
            EngineError::DivisionByZero(_) => "22012",
            EngineError::NumericOutOfRange(_) => "22003",
            EngineError::DataException(_) => "22000",
            EngineError::ProgramLimitExceeded(_) => "54000",
            EngineError::StackDepthExceeded(_) => "54001",
            EngineError::OutOfMemory(_) => "53200",
            EngineError::PlanError(_) => "42000",
            EngineError::Canceled => "57014",
            EngineError::Storage(error) => match error {
                StorageError::TopicNotFound(_) => "42P01",
                StorageError::TopicExists(_) => "42P07",
                StorageError::InvalidBatch { reason, .. } if reason.contains("not-null") => "23502",
                StorageError::InvalidBatch { .. } => "22000",
                StorageError::ShuttingDown => "57P01",
                StorageError::Backpressure { .. } => "53000",
                error if error.is_disk_full() => "53100",
                _ => "58030", // io_error
            },
            EngineError::Internal(_) => "XX000",
            EngineError::Sqlstate { code, .. } => code,
        }
    }
}

impl From<DataFusionError> for EngineError {
    fn from(error: DataFusionError) -> Self {
        classify_datafusion(error)
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(error: arrow::error::ArrowError) -> Self {
        classify_arrow(error)
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for EngineError {
    fn from(error: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        use datafusion::sql::sqlparser::parser::ParserError;
        if matches!(error, ParserError::RecursionLimitExceeded) {
            return EngineError::StackDepthExceeded(
                "stack depth limit exceeded: the statement nests more than 50 levels deep (parentheses, subqueries or prefix operators)".into(),
            );
        }
        EngineError::Syntax(error.to_string().trim_start_matches("sql parser error: ").to_string())
    }
}

fn classify_arrow(error: arrow::error::ArrowError) -> EngineError {
    use arrow::error::ArrowError;
    match error {
        ArrowError::DivideByZero => EngineError::DivisionByZero("division by zero".into()),
        // A number out of the target type's range (`Can't cast value 2147483648 to type Int32`,
        // `value of 9223372036854775808 is out of range Int64`), as PostgreSQL says it.
        ArrowError::CastError(message) if message.starts_with("Can't cast value") || message.contains(" is out of range ") => {
            let name = match message.rsplit(' ').next() {
                Some("Int16") => "smallint",
                Some("Int32") => "integer",
                Some("Int64") => "bigint",
                _ => return EngineError::NumericOutOfRange(message),
            };
            EngineError::NumericOutOfRange(format!("{name} out of range"))
        }
        ArrowError::CastError(message) | ArrowError::ParseError(message) => {
            if message.contains("overflow") || message.contains("too large") || message.contains("out of range") {
                EngineError::NumericOutOfRange(message)
            } else {
                EngineError::InvalidText(message)
            }
        }
        ArrowError::ArithmeticOverflow(message) => EngineError::NumericOutOfRange(message),
        ArrowError::InvalidArgumentError(message) if message.contains("non-nullable") => {
            let column = message.split('\'').nth(1).unwrap_or("?").to_string();
            EngineError::NotNullViolation(format!("null value in column \"{column}\" violates not-null constraint"))
        }
        ArrowError::ExternalError(inner) => match inner.downcast::<EngineError>() {
            Ok(engine) => *engine,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(datafusion) => classify_datafusion(*datafusion),
                Err(other) => EngineError::Internal(other.to_string()),
            },
        },
        other => EngineError::DataException(other.to_string()),
    }
}

/// [`classify_datafusion`] of an error that several streams share (a repartition's), which
/// cannot be taken apart: an engine error inside keeps its SQLSTATE and message.
fn classify_shared(error: &DataFusionError) -> EngineError {
    match error {
        DataFusionError::ResourcesExhausted(message) => EngineError::OutOfMemory(message.clone()),
        DataFusionError::External(inner) => match inner.downcast_ref::<EngineError>() {
            Some(engine) => EngineError::Sqlstate { code: engine.sqlstate(), message: engine.to_string() },
            None => EngineError::Internal(inner.to_string()),
        },
        DataFusionError::Shared(inner) => classify_shared(inner),
        DataFusionError::Context(_, inner) => classify_shared(inner),
        other => classify_datafusion(DataFusionError::Execution(other.to_string())),
    }
}

fn classify_datafusion(error: DataFusionError) -> EngineError {
    match error {
        DataFusionError::ArrowError(arrow, _) => classify_arrow(*arrow),
        DataFusionError::SQL(parser, _) => EngineError::from(*parser),
        DataFusionError::NotImplemented(message) => EngineError::NotSupported(message),
        DataFusionError::SchemaError(schema, _) => {
            let message = schema.to_string();
            if message.contains("No field named") || message.contains("not found") {
                EngineError::UndefinedColumn(message.trim_start_matches("Schema error: ").to_string())
            } else {
                EngineError::PlanError(message)
            }
        }
        DataFusionError::Plan(message) => {
            if let (Some(start), true) = (message.find("table '"), message.contains("not found")) {
                let rest = &message[start + "table '".len()..];
                let name = rest.split('\'').next().unwrap_or(rest);
                let name = name.rsplit('.').next().unwrap_or(name);
                return EngineError::UndefinedTable(name.to_string());
            }
            EngineError::PlanError(message)
        }
        DataFusionError::Diagnostic(_, inner) => classify_datafusion(*inner),
        // Several errors the planner gathered (one a select item): the first is the answer.
        DataFusionError::Collection(errors) => match errors.into_iter().next() {
            Some(first) => classify_datafusion(first),
            None => EngineError::Internal("an empty collection of errors".into()),
        },
        DataFusionError::External(inner) => match inner.downcast::<EngineError>() {
            Ok(engine) => *engine,
            Err(other) => match other.downcast::<StorageError>() {
                Ok(storage) => EngineError::Storage(*storage),
                Err(other) => EngineError::Internal(other.to_string()),
            },
        },
        DataFusionError::Context(_, inner) => classify_datafusion(*inner),
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(only) => classify_datafusion(only),
            Err(shared) => classify_shared(&shared),
        },
        DataFusionError::Execution(message) => {
            if message.contains("Divide by zero") || message.contains("division by zero") {
                EngineError::DivisionByZero("division by zero".into())
            } else if message.contains("Overflow") || message.contains("overflow") {
                EngineError::NumericOutOfRange(message)
            } else if message.contains("Cannot cast") || message.contains("Error parsing") {
                EngineError::InvalidText(message)
            } else {
                EngineError::DataException(message)
            }
        }
        DataFusionError::ResourcesExhausted(message) => EngineError::OutOfMemory(message),
        other => EngineError::Internal(other.to_string()),
    }
}
