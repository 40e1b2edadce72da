//! CREATE / DROP MATERIALIZED VIEW, FLUSH, and starting views when the engine opens.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use streamhouse_catalog::{CatalogError, ViewDefinition};

use super::plan::{build_pipeline, check_deterministic, has_distinct_on, Sources, StreamPlan};
use super::view::{self, RefreshMode};
use crate::session::{new_context, plan_query};
use crate::sql::statement::{EMIT_ON_WINDOW_CLOSE, EMIT_OPTION};
use crate::{Engine, EngineError, Result};

/// Plans a view's pipeline; `view_id` namespaces its state (0 when only checking or explaining).
pub(crate) async fn plan_view(
    engine: &Arc<Engine>,
    state: &SessionState,
    query: &ast::Query,
    view_id: u64,
    emit_on_window_close: bool,
) -> Result<StreamPlan> {
    let plan = plan_query(state, engine.storage(), query.clone()).await?;
    check_deterministic(&plan)?;
    let distinct_on = has_distinct_on(&plan);
    let optimized = state.optimize(&plan)?;
    let state_bytes_max = usize::try_from(engine.config().state_cache_bytes_max).unwrap_or(usize::MAX);
    build_pipeline(state, &optimized, view_id, emit_on_window_close, state_bytes_max, distinct_on)
}

fn emits_on_window_close(options: &BTreeMap<String, String>) -> bool {
    options.get(EMIT_OPTION).map(String::as_str) == Some(EMIT_ON_WINDOW_CLOSE)
}

/// The `refresh` option (continuous when absent).
pub(crate) fn refresh_mode(options: &BTreeMap<String, String>) -> Result<RefreshMode> {
    options.get("refresh").map_or(Ok(RefreshMode::Continuous), |text| RefreshMode::parse(text))
}

/// The definition as SHOW prints it.
pub(crate) fn definition_text(meta: &streamhouse_catalog::ViewMeta) -> String {
    let mut text = meta.query.clone();
    if emits_on_window_close(&meta.options) {
        text.push_str(" EMIT ON WINDOW CLOSE");
    }
    if let Some(refresh) = meta.options.get("refresh") {
        text = format!("{text} WITH (refresh = '{refresh}')");
    }
    text
}

/// Asks the registry what of view `id`'s changelog its readers still need.
fn changes_needed(engine: &Arc<Engine>, id: u64) -> view::ChangesNeeded {
    let views = Arc::downgrade(engine.views());
    Arc::new(move || views.upgrade().map_or(u64::MAX, |v| v.changes_needed(id)))
}

fn catalog_error(error: CatalogError) -> EngineError {
    match error {
        CatalogError::TopicExists(name) => EngineError::DuplicateTable(name),
        CatalogError::TopicNotFound(name) => EngineError::UndefinedTable(name),
        CatalogError::ViewNotFound(name) => EngineError::UndefinedTable(name),
        CatalogError::InUse { name, dependents } => EngineError::Sqlstate {
            code: "2BP01",
            message: format!("cannot drop \"{name}\" because materialized views depend on it: {}", dependents.join(", ")),
        },
        other => EngineError::Storage(other.into()),
    }
}

/// Creates a view, backfills it from its source's existing rows and starts following new ones.
/// Returns once the backfill is committed. Returns false if it existed and `if_not_exists`.
pub(crate) async fn create_view(
    engine: &Arc<Engine>,
    state: &SessionState,
    name: &str,
    query: &ast::Query,
    options: BTreeMap<String, String>,
    if_not_exists: bool,
) -> Result<bool> {
    let taken = engine.views().get(name).is_some() || engine.storage().topic(name).is_some();
    if taken {
        return if if_not_exists { Ok(false) } else { Err(EngineError::DuplicateTable(name.to_string())) };
    }
    let emit = emits_on_window_close(&options);
    let refresh = refresh_mode(&options)?;
    let checked = plan_view(engine, state, query, 0, emit).await?;
    let (sources, source_views) = match &checked.sources {
        Sources::Topics(topics) => (topics.iter().map(|t| t.id()).collect(), vec![]),
        Sources::View(view) => (vec![], vec![view.meta.id]),
    };
    let definition = ViewDefinition { name: name.to_string(), query: query.to_string(), options, sources, source_views };
    let meta = match engine.storage().catalog().create_view(&definition) {
        Ok(meta) => meta,
        Err(CatalogError::TopicExists(_)) if if_not_exists => return Ok(false),
        Err(error) => return Err(catalog_error(error)),
    };
    let views = engine.views();
    views.insert_meta(meta.clone());
    let started = async {
        let plan = plan_view(engine, state, query, meta.id, emit).await?;
        view::start(meta.clone(), plan, engine.storage().clone(), views.store().clone(), views.timing, changes_needed(engine, meta.id), refresh, views.read_cache().clone())
    }
    .await;
    let handle = match started {
        Ok(handle) => handle,
        Err(error) => {
            views.insert_broken(meta, error.to_string());
            drop_view(engine, name, true, false).await?;
            return Err(error);
        }
    };
    views.insert(handle.clone());
    // The backfill, whatever the refresh mode.
    if let Err(error) = handle.refresh().await {
        // A view that cannot even backfill is not created.
        drop_view(engine, name, true, false).await?;
        return Err(error);
    }
    Ok(true)
}

/// Drops a view and deletes its state; with `cascade`, the views reading it first.
pub(crate) async fn drop_view(engine: &Arc<Engine>, name: &str, if_exists: bool, cascade: bool) -> Result<()> {
    let views = engine.views();
    let Some(meta) = views.metas().into_iter().find(|m| m.name == name) else {
        return if if_exists { Ok(()) } else { Err(EngineError::UndefinedTable(name.to_string())) };
    };
    if cascade {
        let readers: Vec<String> =
            views.metas().into_iter().filter(|m| m.source_views.contains(&meta.id)).map(|m| m.name).collect();
        for reader in readers {
            Box::pin(drop_view(engine, &reader, true, true)).await?;
        }
    }
    engine.storage().freeing_space(|| engine.storage().catalog().drop_view(name)).map_err(catalog_error)?;
    views.remove_meta(meta.id);
    if let Some(handle) = views.remove(name) {
        handle.stop().await;
    }
    views.remove_broken(name);
    // (A read still running may put the view back; the cache's bound evicts it like any other.)
    views.read_cache().remove(meta.id);
    views.store().delete_view(meta.id)
}

/// Views ordered so that every view comes after the views it reads.
fn in_dependency_order(engine: &Arc<Engine>) -> Vec<Arc<super::ViewHandle>> {
    let mut remaining = engine.views().list();
    let mut done: std::collections::HashSet<u64> = Default::default();
    let mut ordered = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|view| {
            let ready = view.meta.source_views.iter().all(|id| done.contains(id));
            if ready {
                done.insert(view.meta.id);
                ordered.push(view.clone());
            }
            !ready
        });
        if remaining.len() == before {
            // An upstream that is not running (it failed to start): the rest in any order.
            ordered.append(&mut remaining);
        }
    }
    ordered
}

/// Waits until every row acknowledged before the call is reflected in every view.
pub(crate) async fn flush(engine: &Arc<Engine>, only: Option<&str>) -> Result<()> {
    let views = match only {
        Some(name) => {
            // The view and, first, every view it reads, recursively.
            let all = in_dependency_order(engine);
            let mut needed: std::collections::HashSet<u64> = Default::default();
            let target = engine.views().get(name).ok_or_else(|| EngineError::UndefinedTable(name.to_string()))?;
            let mut stack = vec![target.meta.id];
            while let Some(id) = stack.pop() {
                if needed.insert(id) {
                    if let Some(view) = all.iter().find(|v| v.meta.id == id) {
                        stack.extend(view.meta.source_views.iter().copied());
                    }
                }
            }
            all.into_iter().filter(|v| needed.contains(&v.meta.id)).collect()
        }
        None => in_dependency_order(engine),
    };
    // Topic targets are taken at the call; a view over a view targets its upstream's epoch
    // once that upstream is flushed.
    let topic_targets: Vec<Vec<u64>> = views
        .iter()
        .map(|v| match &v.source {
            Sources::Topics(_) => v.source_targets(),
            Sources::View(_) => Vec::new(),
        })
        .collect();
    for (view, targets) in views.iter().zip(topic_targets) {
        if only == Some(view.meta.name.as_str()) {
            // REFRESH of this view: whatever its mode, it reads everything there is now.
            view.refresh().await?;
            continue;
        }
        if view.refresh != RefreshMode::Continuous {
            continue; // such views reflect their source only when refreshed
        }
        let targets = match &view.source {
            Sources::Topics(_) => targets,
            Sources::View(_) => view.source_targets(),
        };
        view.wait_for(&targets).await?;
    }
    Ok(())
}

/// Starts every view in the catalog from its last committed epoch; deletes state left by views
/// that no longer exist. A view that cannot be planned is kept aside (listed, droppable).
pub(crate) async fn start_views(engine: &Arc<Engine>) -> Result<()> {
    let mut metas = engine.storage().catalog().list_views().map_err(catalog_error)?;
    let views = engine.views();
    views.sweep(&metas.iter().map(|m| m.id).collect::<Vec<_>>())?;
    for meta in &metas {
        views.insert_meta(meta.clone());
    }
    // A view is planned after the views it reads (they must resolve as tables). Ids grow with
    // creation and a view can only read views that existed before it.
    metas.sort_by_key(|m| m.id);
    let (context, _) = new_context(engine)?;
    let state = context.state();
    for meta in metas {
        let started = async {
            let query = Parser::new(&PostgreSqlDialect {}).try_with_sql(&meta.query)?.parse_query()?;
            let plan = plan_view(engine, &state, &query, meta.id, emits_on_window_close(&meta.options)).await?;
            let refresh = refresh_mode(&meta.options)?;
            view::start(meta.clone(), plan, engine.storage().clone(), views.store().clone(), views.timing, changes_needed(engine, meta.id), refresh, views.read_cache().clone())
        }
        .await;
        match started {
            Ok(handle) => views.insert(handle),
            Err(error) => {
                tracing::error!(view = %meta.name, %error, "materialized view cannot start");
                views.insert_broken(meta, error.to_string());
            }
        }
    }
    Ok(())
}

/// One row per view: name, definition, status, epoch, rows, lag in rows and seconds, watermark,
/// late rows dropped.
pub(crate) fn show_views(engine: &Arc<Engine>, schema: arrow::datatypes::SchemaRef) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    type Row = (String, String, String, i64, i64, i64, f64, Option<i64>, i64);
    let mut rows: Vec<Row> = Vec::new();
    for view in engine.views().list() {
        let progress = view.progress();
        let targets = view.source_targets();
        let lag: u64 = targets.iter().zip(&progress.offsets).map(|(t, o)| t.saturating_sub(*o)).sum();
        let status = match &progress.failed {
            Some(message) => format!("failed: {message}"),
            None if progress.epoch == 0 || lag > 0 => "catching up".to_string(),
            None => "running".to_string(),
        };
        // Seconds behind: how long ago the view last committed, while rows are waiting.
        let seconds = if lag > 0 { (now_ms - progress.committed_ms).max(0) as f64 / 1000.0 } else { 0.0 };
        rows.push((
            view.meta.name.clone(),
            definition_text(&view.meta),
            status,
            progress.epoch as i64,
            progress.rows,
            lag as i64,
            seconds,
            progress.watermark_us,
            progress.late_rows as i64,
        ));
    }
    for (meta, reason) in engine.views().broken() {
        rows.push((meta.name.clone(), definition_text(&meta), format!("failed to start: {reason}"), 0, 0, 0, 0.0, None, 0));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.5))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.6))),
        Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.7).collect::<Vec<_>>())),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.8))),
    ];
    Ok(arrow::array::RecordBatch::try_new(schema, columns)?)
}

/// DESCRIBE of a view: its columns, then per source partition the view's next offset
/// (`low_offset`) and the partition's high watermark (`high_offset`).
pub(crate) fn describe_view(
    view: &super::ViewHandle,
    schema: arrow::datatypes::SchemaRef,
) -> Result<arrow::array::RecordBatch> {
    let progress = view.progress();
    let mut rows = crate::show::DescribeRows::default();
    for field in view.schema.fields() {
        rows.column("column", field.name(), crate::text::input::pg_type_name(field.data_type()), field.is_nullable());
    }
    for (position, target) in view.source_targets().iter().enumerate() {
        let name = view.source.position_name(position);
        rows.offsets("source partition", name, progress.offsets.get(position).copied().unwrap_or(0), *target, None);
    }
    rows.finish(schema)
}
