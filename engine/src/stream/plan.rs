//! The streaming planner: a view's query → DataFusion logical plan → a pipeline of our
//! operators (a source, then stateless filters and projections and stateful aggregates).
//!
//! DataFusion plans and optimizes the query as it would a batch query; we then walk the plan
//! and map each node to an operator, tracking whether the stream is still append-only (the
//! cheaper aggregate state needs that). What cannot be maintained incrementally is refused here
//! with an error that names the construct.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use streamhouse_storage::TopicLog;

use super::aggregate::{AggCall, AggFunc, AggregateOp, WindowKey};
use super::changes::{FilterOp, Operator, ProjectOp};
use super::topn::{StateResults, TopNOp};
use super::view::ViewHandle;
use super::window::{WindowAssigner, WindowTableProvider};
use crate::provider::TopicTableProvider;
use crate::{EngineError, Result};

/// What a view reads: a topic's log, or another view's changelog.
#[derive(Clone)]
pub enum Upstream {
    Topic(Arc<TopicLog>),
    View(Arc<ViewHandle>),
}

impl Upstream {
    pub fn name(&self) -> &str {
        match self {
            Upstream::Topic(topic) => topic.name(),
            Upstream::View(view) => &view.meta.name,
        }
    }

    /// What the view's progress must reach to reflect everything its source holds now: the
    /// topic partitions' high watermarks, or the epoch after the upstream view's last commit.
    pub fn targets(&self) -> Vec<u64> {
        match self {
            Upstream::Topic(topic) => {
                (0..topic.partition_count()).map(|p| topic.partition(p).map_or(0, |l| l.high_watermark())).collect()
            }
            Upstream::View(view) => vec![view.progress().epoch + 1],
        }
    }

    /// Identifies the source in a view's progress record (views have the top bit set).
    pub fn tag(&self) -> u64 {
        match self {
            Upstream::Topic(topic) => topic.id(),
            Upstream::View(view) => view.meta.id | (1 << 63),
        }
    }
}

/// Everything a view reads: one view's changelog, or one or more topics (a UNION ALL reads
/// several). A view's progress holds one offset per position: the partitions of each topic in
/// turn, or the upstream view's next epoch.
#[derive(Clone)]
pub enum Sources {
    Topics(Vec<Arc<TopicLog>>),
    View(Arc<ViewHandle>),
}

impl Sources {
    /// What the view's progress must reach to reflect everything its sources hold now.
    pub fn targets(&self) -> Vec<u64> {
        match self {
            Sources::Topics(topics) => topics.iter().flat_map(|t| Upstream::Topic(t.clone()).targets()).collect(),
            Sources::View(view) => vec![view.progress().epoch + 1],
        }
    }

    /// Identifies the sources in a view's progress record: a topic's id, a view's id with the
    /// top bit set, or for several topics a mix of their ids with the second bit set.
    pub fn tag(&self) -> u64 {
        match self {
            Sources::Topics(topics) if topics.len() == 1 => topics[0].id(),
            Sources::Topics(topics) => {
                let mixed = topics.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, t| (h ^ t.id()).wrapping_mul(0x1000_0000_01b3));
                (mixed & !(3 << 62)) | (1 << 62)
            }
            Sources::View(view) => view.meta.id | (1 << 63),
        }
    }

    /// Per position: the topic index and partition (a view's changelog is position 0 of topic
    /// index 0).
    pub fn positions(&self) -> Vec<(usize, u32)> {
        match self {
            Sources::Topics(topics) => topics
                .iter()
                .enumerate()
                .flat_map(|(index, topic)| (0..topic.partition_count()).map(move |p| (index, p)))
                .collect(),
            Sources::View(_) => vec![(0, 0)],
        }
    }

    /// A position's name: `topic/partition`, or the upstream view's.
    pub fn position_name(&self, position: usize) -> String {
        match self {
            Sources::Topics(topics) => match self.positions().get(position) {
                Some((index, partition)) => format!("{}/{partition}", topics[*index].name()),
                None => format!("#{position}"),
            },
            Sources::View(view) => format!("view {} (epoch)", view.meta.name),
        }
    }

    /// The position of a topic's partition, if the view reads that topic.
    pub fn position_of(&self, topic_id: u64, partition: u32) -> Option<usize> {
        let Sources::Topics(topics) = self else { return None };
        let index = topics.iter().position(|t| t.id() == topic_id)?;
        self.positions().iter().position(|p| *p == (index, partition))
    }
}

/// Where a view's rows come from, optionally through a window function, projected.
#[derive(Clone)]
pub struct SourceSpec {
    pub upstream: Upstream,
    pub window: Option<WindowAssigner>,
    /// Indices into the topic's full schema (or the window function's schema).
    pub projection: Option<Vec<usize>>,
    pub schema: SchemaRef,
}

impl SourceSpec {
    /// Turns rows read from the topic (full schema) into the source's output.
    pub fn shape(&self, batch: &arrow::array::RecordBatch) -> Result<arrow::array::RecordBatch> {
        let batch = match &self.window {
            Some(window) => window.assign(batch)?,
            None => batch.clone(),
        };
        Ok(match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        })
    }

    fn describe(&self) -> String {
        let columns: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        match (&self.upstream, &self.window) {
            (Upstream::Topic(topic), Some(w)) => format!("Source: {} {} columns=[{}]", topic.name(), w.kind, columns.join(", ")),
            (Upstream::Topic(topic), None) if topic.is_keyed() => {
                format!("Source: {} (keyed table changelog) columns=[{}]", topic.name(), columns.join(", "))
            }
            (Upstream::Topic(topic), None) => format!("Source: {} (append-only) columns=[{}]", topic.name(), columns.join(", ")),
            (Upstream::View(view), _) => format!("Source: view {} (changelog) columns=[{}]", view.meta.name, columns.join(", ")),
        }
    }
}

/// One input of a view's pipeline: a source and the operators that only its rows go through
/// (the branches of a UNION ALL; a view without one has one branch and no branch operators).
pub struct Branch {
    pub source: SourceSpec,
    /// Which of the view's topics the branch reads (0 for a view's changelog).
    pub topic_index: usize,
    /// For a keyed table source: turns its upserts and tombstones into changes.
    pub keyed: Option<super::keyed::KeyedChangelog>,
    pub operators: Vec<Box<dyn Operator>>,
}

/// A view's pipeline: its branches, then the operators every row goes through.
pub struct StreamPlan {
    pub sources: Sources,
    pub branches: Vec<Branch>,
    pub operators: Vec<Box<dyn Operator>>,
    /// The view's columns.
    pub schema: SchemaRef,
    /// The view's results are only ever inserted (no operator retracts): they are kept as a log.
    pub append_only: bool,
    /// The last stateful operator is a top-N with only projections after it: its state can
    /// hold the view's results (a view created before this existed keeps them as a multiset).
    pub state_results: Option<StateResults>,
    /// The size of the last epoch's write batch: the next one reserves as much.
    pub epoch_batch_bytes: usize,
    /// The view's memory bound (`state_cache_bytes_max`): an epoch whose operators, write
    /// batch and output reach it ends early, and caches are dropped between epochs once they
    /// hold more than half of it.
    pub state_bytes_max: usize,
}

impl StreamPlan {
    /// Bytes the view's operators (and keyed sources) hold in memory, approximately.
    pub fn memory_bytes(&self) -> usize {
        Self::memory_bytes_of(&self.branches, &self.operators)
    }

    /// [`Self::memory_bytes`] of a plan's parts (while they are borrowed apart).
    pub fn memory_bytes_of(branches: &[Branch], operators: &[Box<dyn Operator>]) -> usize {
        branches
            .iter()
            .map(|b| b.operators.iter().map(|o| o.memory_bytes()).sum::<usize>() + b.keyed.as_ref().map_or(0, |k| k.memory_bytes()))
            .sum::<usize>()
            + operators.iter().map(|o| o.memory_bytes()).sum::<usize>()
    }

    /// Drops every operator's cache of earlier epochs.
    pub fn drop_caches(&mut self) {
        for operator in self.operators.iter_mut().chain(self.branches.iter_mut().flat_map(|b| b.operators.iter_mut())) {
            operator.drop_cache();
        }
    }

    /// Keeps the results out of the top-N's state (a view that has kept them elsewhere since
    /// it was created).
    pub fn results_outside_state(&mut self) {
        if self.state_results.take().is_some() {
            for operator in &mut self.operators {
                operator.keep_results(false);
            }
        }
    }

    /// The plan as EXPLAIN prints it, sink first.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Materialize: columns=[{}]{}",
            self.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
            if self.append_only {
                " append-only (results kept as a log)"
            } else if self.state_results.is_some() {
                " (results kept in the top-N's state)"
            } else {
                ""
            }
        )];
        for operator in self.operators.iter().rev() {
            lines.push(operator.describe());
        }
        let depth = lines.len();
        let mut out: Vec<String> = lines.iter().enumerate().map(|(depth, line)| format!("{}{line}", "  ".repeat(depth))).collect();
        let branch_depth = if self.branches.len() > 1 {
            out.push(format!("{}Union all", "  ".repeat(depth)));
            depth + 1
        } else {
            depth
        };
        for branch in &self.branches {
            let mut branch_lines: Vec<String> = branch.operators.iter().rev().map(|o| o.describe()).collect();
            branch_lines.push(branch.source.describe());
            out.extend(branch_lines.iter().enumerate().map(|(d, line)| format!("{}{line}", "  ".repeat(branch_depth + d))));
        }
        out
    }
}

/// Refuses non-deterministic functions anywhere in the (unoptimized) plan: the optimizer would
/// otherwise fold `now()` into the constant of the moment the view was created.
pub fn check_deterministic(plan: &LogicalPlan) -> Result<()> {
    let mut found: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Expr::ScalarFunction(function) = e {
                    if function.func.signature().volatility != Volatility::Immutable {
                        found = Some(function.func.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(if found.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    match found {
        Some(name) => Err(EngineError::NotSupported(format!(
            "the non-deterministic function {name}() in a materialized view (its result would depend on when each row is processed)"
        ))),
        None => Ok(()),
    }
}

struct Builder<'a> {
    state: &'a SessionState,
    view: u64,
    source: Option<SourceSpec>,
    /// The branches of a UNION ALL below `operators` (instead of `source`).
    union: Option<Vec<(SourceSpec, Vec<Box<dyn Operator>>)>>,
    /// Operators built so far in the whole plan: the next one's id (state namespace).
    next_id: u16,
    operators: Vec<Box<dyn Operator>>,
    /// Whether the stream so far carries only inserts.
    append_only: bool,
    /// Indices (into `operators`) of the aggregates, in pipeline order.
    aggregates: Vec<usize>,
    /// The aggregates' window keys, by the same order.
    windows: Vec<Option<WindowKey>>,
    /// A filter `column <= N` seen above: the column (as named below it) and N, for a
    /// ROW_NUMBER() window to become a top-N.
    pending_limit: Option<(String, usize)>,
    /// A top-N took the pending limit (the filter that set it has nothing left to do).
    limit_applied: bool,
    /// The query is a DISTINCT ON: its ORDER BY says which row of each group is kept, which
    /// DataFusion has turned into first_value(… ORDER BY …); the sort of the result it leaves
    /// means nothing for a view's rows.
    distinct_on: bool,
    /// Per column of the stream so far: if it is a window bound that the source's watermark
    /// closes, how far the window's end is from its value.
    window_columns: Vec<Option<i64>>,
}

impl<'a> Builder<'a> {
    /// A builder for a whole plan, or for one branch of a union (whose operators' ids continue
    /// from `next_id`).
    fn new(state: &'a SessionState, view: u64, distinct_on: bool, next_id: u16) -> Self {
        Builder {
            state,
            view,
            source: None,
            union: None,
            next_id,
            operators: Vec::new(),
            append_only: true,
            aggregates: Vec::new(),
            windows: Vec::new(),
            window_columns: Vec::new(),
            pending_limit: None,
            limit_applied: false,
            distinct_on,
        }
    }

    /// The id (state namespace) the next operator pushed gets: operators are numbered in the
    /// order they are built, across branches.
    fn next_operator_id(&self) -> u16 {
        self.next_id
    }

    fn push(&mut self, operator: Box<dyn Operator>) {
        self.next_id += 1;
        self.operators.push(operator);
    }

    /// `SESSION(topic, …)`: the topic's user columns, then a session operator that assigns
    /// (and, as sessions grow, reassigns) each row's session and projects the scan's columns.
    fn build_session(
        &mut self,
        session: &super::session::SessionTableProvider,
        projection: Option<Vec<usize>>,
        schema: SchemaRef,
    ) -> Result<()> {
        let topic = &session.topic;
        let user = topic.schema().fields().len();
        self.source = Some(SourceSpec {
            upstream: Upstream::Topic(topic.clone()),
            window: None,
            projection: Some((0..user).collect()),
            schema: topic.schema().clone(),
        });
        let id = self.next_operator_id();
        let op = super::session::SessionOp::new(id, self.view, session.spec.clone(), projection.clone())?;
        self.push(Box::new(op));
        self.append_only = false;
        // A session ends for good once the watermark passes its window_end (no later row can
        // join it), so window_end closes like a TUMBLE window's end; window_start does not.
        let closes = topic.event_time_column() == Some(session.spec.time_column);
        let all: Vec<usize> = (0..user + 2).collect();
        self.window_columns = projection
            .as_ref()
            .unwrap_or(&all)
            .iter()
            .map(|&index| (closes && index == user + 1).then_some(0))
            .collect();
        debug_assert_eq!(self.window_columns.len(), schema.fields().len());
        Ok(())
    }

    /// `UNION ALL`: each input becomes a branch with its own source and operators.
    fn build_union(&mut self, union: &datafusion::logical_expr::logical_plan::Union) -> Result<()> {
        let mut branches = Vec::with_capacity(union.inputs.len());
        for input in &union.inputs {
            let mut branch = Builder::new(self.state, self.view, false, self.next_id);
            branch.build(input)?;
            self.next_id = branch.next_id;
            self.append_only &= branch.append_only;
            let Some(source) = branch.source else {
                return Err(unsupported("a UNION ALL inside a branch of another UNION ALL"));
            };
            if matches!(source.upstream, Upstream::View(_)) {
                return Err(unsupported("UNION ALL over a materialized view (a UNION ALL reads topics and tables)"));
            }
            branches.push((source, branch.operators));
        }
        // Windows do not close across a union: it has no single watermark.
        self.window_columns = vec![None; union.schema.fields().len()];
        self.union = Some(branches);
        Ok(())
    }
}

fn unsupported(what: &str) -> EngineError {
    EngineError::NotSupported(format!("{what} in a materialized view"))
}

impl Builder<'_> {
    /// The window information of an expression that is a bare (possibly aliased) column.
    fn window_column(&self, expr: &Expr, schema: &DFSchema) -> Option<i64> {
        let column = match expr {
            Expr::Column(column) => column,
            Expr::Alias(alias) => match alias.expr.as_ref() {
                Expr::Column(column) => column,
                _ => return None,
            },
            _ => return None,
        };
        let index = schema.index_of_column(column).ok()?;
        self.window_columns.get(index).copied().flatten()
    }

    /// ORDER BY keys as expressions, types and arrow sort options.
    fn sort_keys(
        &self,
        sorts: &[datafusion::logical_expr::SortExpr],
        schema: &DFSchema,
    ) -> Result<Vec<(Arc<dyn PhysicalExpr>, arrow::datatypes::DataType, arrow::compute::SortOptions)>> {
        sorts
            .iter()
            .map(|sort| {
                Ok((
                    self.physical(&sort.expr, schema)?,
                    sort.expr.to_field(schema)?.1.data_type().clone(),
                    arrow::compute::SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first },
                ))
            })
            .collect()
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = self.state.create_physical_expr(expr.clone(), schema)?;
        Ok(crate::arithmetic::checked(expr, schema.as_arrow())?.data)
    }

    fn build(&mut self, plan: &LogicalPlan) -> Result<()> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err(unsupported("LIMIT"));
                }
                if self.source.is_some() || self.union.is_some() {
                    return Err(unsupported("reading more than one source other than by UNION ALL (joins)"));
                }
                // Filters pushed into the scan are pruning hints only (our providers answer
                // Inexact), so the Filter above the scan still applies them.
                let provider = source_as_provider(&scan.source)?;
                let any: &dyn Any = provider.as_ref();
                let schema: SchemaRef = Arc::new(scan.projected_schema.as_arrow().clone());
                let source = if let Some(window) = any.downcast_ref::<WindowTableProvider>() {
                    SourceSpec {
                        upstream: Upstream::Topic(window.topic.clone()),
                        window: Some(window.assigner.clone()),
                        projection: scan.projection.clone(),
                        schema,
                    }
                } else if let Some(session) = any.downcast_ref::<super::session::SessionTableProvider>() {
                    return self.build_session(session, scan.projection.clone(), schema);
                } else if let Some(table) = any.downcast_ref::<crate::keyed::KeyedTableProvider>() {
                    // Upserts and deletes retract the rows they replace.
                    self.append_only = false;
                    SourceSpec { upstream: Upstream::Topic(table.topic().clone()), window: None, projection: scan.projection.clone(), schema }
                } else if let Some(topic) = any.downcast_ref::<TopicTableProvider>() {
                    SourceSpec { upstream: Upstream::Topic(topic.topic().clone()), window: None, projection: scan.projection.clone(), schema }
                } else if let Some(view) = any.downcast_ref::<super::view::ViewTableProvider>() {
                    // A view's changes retract as well as insert, unless it keeps its results as
                    // a log (only inserts).
                    self.append_only &= view.view.logs_results();
                    SourceSpec { upstream: Upstream::View(view.view.clone()), window: None, projection: scan.projection.clone(), schema }
                } else {
                    return Err(unsupported(&format!("reading \"{}\" (only topics can be sources)", scan.table_name)));
                };
                self.window_columns = vec![None; source.schema.fields().len()];
                if let Some(window) = &source.window {
                    // Windows close only when the watermark is on the window's own time column.
                    let topic = match &source.upstream {
                        Upstream::Topic(topic) => Some(topic),
                        Upstream::View(_) => None,
                    };
                    if let Some(topic) = topic.filter(|t| t.event_time_column() == Some(window.time_column)) {
                        let user = topic.schema().fields().len();
                        let size = match window.kind {
                            super::window::WindowKind::Tumble { size_us } | super::window::WindowKind::Hop { size_us, .. } => size_us,
                        };
                        let all: Vec<usize> = (0..user + 2).collect();
                        for (position, index) in scan.projection.as_ref().unwrap_or(&all).iter().enumerate() {
                            if *index == user {
                                self.window_columns[position] = Some(size);
                            } else if *index == user + 1 {
                                self.window_columns[position] = Some(0);
                            }
                        }
                    }
                }
                self.source = Some(source);
                Ok(())
            }
            LogicalPlan::Filter(filter) => {
                let limit = row_limit(&filter.predicate);
                let is_limit = limit.is_some();
                if is_limit {
                    self.pending_limit = limit;
                    self.limit_applied = false;
                }
                self.build(&filter.input)?;
                if is_limit && std::mem::take(&mut self.limit_applied) {
                    // The top-N below numbers only its first N rows: this filter keeps them all.
                    return Ok(());
                }
                let predicate = self.physical(&filter.predicate, filter.input.schema())?;
                self.push(Box::new(FilterOp { predicate, text: filter.predicate.to_string() }));
                Ok(())
            }
            LogicalPlan::Projection(projection) => {
                // A pending top-N limit follows its column through renames.
                if let Some((name, limit)) = self.pending_limit.take() {
                    let renamed = projection.schema.fields().iter().zip(&projection.expr).find_map(|(field, expr)| {
                        let inner = match expr {
                            Expr::Alias(alias) => alias.expr.as_ref(),
                            other => other,
                        };
                        match inner {
                            Expr::Column(column) if field.name() == &name => Some(column.name.clone()),
                            _ => None,
                        }
                    });
                    self.pending_limit = renamed.map(|n| (n, limit));
                }
                self.build(&projection.input)?;
                let exprs = projection
                    .expr
                    .iter()
                    .map(|e| self.physical(e, projection.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                let texts = projection.expr.iter().map(|e| e.to_string()).collect();
                let schema = Arc::new(projection.schema.as_arrow().clone());
                self.window_columns = projection.expr.iter().map(|e| self.window_column(e, projection.input.schema())).collect();
                self.push(Box::new(ProjectOp { exprs, texts, schema }));
                Ok(())
            }
            LogicalPlan::SubqueryAlias(alias) => self.build(&alias.input),
            LogicalPlan::Aggregate(aggregate) => {
                self.build(&aggregate.input)?;
                let input_schema = aggregate.input.schema();
                let mut group_exprs = Vec::new();
                let mut group_types = Vec::new();
                for expr in &aggregate.group_expr {
                    if matches!(expr, Expr::GroupingSet(_)) {
                        return Err(unsupported("GROUPING SETS, CUBE and ROLLUP"));
                    }
                    group_exprs.push(self.physical(expr, input_schema)?);
                    group_types.push(expr.to_field(input_schema)?.1.data_type().clone());
                }
                let group_texts = aggregate.group_expr.iter().map(|e| e.to_string()).collect();
                let group_count = aggregate.group_expr.len();
                let mut calls = Vec::new();
                for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
                    let output_type = aggregate.schema.field(group_count + index).data_type().clone();
                    calls.push(self.aggregate_call(expr, input_schema, output_type)?);
                }
                let schema = Arc::new(aggregate.schema.as_arrow().clone());
                let id = self.next_operator_id();
                let group_windows: Vec<Option<i64>> =
                    aggregate.group_expr.iter().map(|e| self.window_column(e, input_schema)).collect();
                let window = group_windows
                    .iter()
                    .enumerate()
                    .find_map(|(group_index, w)| w.map(|end_offset_us| WindowKey { group_index, end_offset_us }));
                self.aggregates.push(self.operators.len());
                self.windows.push(window);
                self.window_columns = group_windows.into_iter().chain(std::iter::repeat_n(None, calls.len())).collect();
                let op = AggregateOp::new(
                    id,
                    self.view,
                    group_exprs,
                    group_texts,
                    group_types,
                    calls,
                    schema,
                    self.append_only,
                    window,
                    false,
                )?;
                self.push(Box::new(op));
                self.append_only = false;
                Ok(())
            }
            LogicalPlan::Sort(sort) if self.distinct_on && sort.fetch.is_none() => self.build(&sort.input),
            LogicalPlan::Sort(_) => Err(unsupported("ORDER BY (a view's rows have no order; order them when you query it)")),
            LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
            LogicalPlan::Window(window) => self.build_top_n(window),
            LogicalPlan::Join(_) => Err(unsupported("JOIN")),
            LogicalPlan::Union(union) => {
                if self.source.is_some() || self.union.is_some() {
                    return Err(unsupported("reading more than one source other than by UNION ALL (joins)"));
                }
                self.build_union(union)
            }
            LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                Err(EngineError::InvalidDefinition("a materialized view must read a topic".into()))
            }
            other => Err(unsupported(&other.display().to_string())),
        }
    }

    /// `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` under a filter `rn <= N`: a top-N.
    fn build_top_n(&mut self, window: &datafusion::logical_expr::logical_plan::Window) -> Result<()> {
        let refused = || unsupported("window functions (OVER) other than ROW_NUMBER() kept to rn <= N");
        let pending = self.pending_limit.take();
        let [expr] = window.window_expr.as_slice() else { return Err(refused()) };
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::WindowFunction(function) = inner else { return Err(refused()) };
        let output = window.schema.fields().last().map(|f| f.name().clone()).unwrap_or_default();
        let limit = match pending {
            Some((name, limit)) if name == output && function.fun.name() == "row_number" => limit,
            _ => return Err(refused()),
        };
        self.build(&window.input)?;
        let input_schema = window.input.schema();
        let params = &function.params;
        let partition_exprs =
            params.partition_by.iter().map(|e| self.physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
        let partition_types = params
            .partition_by
            .iter()
            .map(|e| Ok(e.to_field(input_schema)?.1.data_type().clone()))
            .collect::<Result<Vec<_>>>()?;
        let order_exprs = self.sort_keys(&params.order_by, input_schema)?;
        let input_types = input_schema.fields().iter().map(|f| f.data_type().clone()).collect();
        let schema = Arc::new(window.schema.as_arrow().clone());
        let id = self.next_operator_id();
        let text = format!("{expr} <= {limit}");
        let op = TopNOp::new(id, self.view, partition_exprs, partition_types, order_exprs, input_types, limit, self.append_only, schema, text)?;
        self.push(Box::new(op));
        self.limit_applied = true;
        self.window_columns = vec![None; window.schema.fields().len()];
        self.append_only = false;
        Ok(())
    }

    fn aggregate_call(&self, expr: &Expr, input: &DFSchema, output_type: arrow::datatypes::DataType) -> Result<AggCall> {
        let text = expr.to_string();
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(EngineError::Internal(format!("aggregate expression {expr} is not an aggregate function")));
        };
        let name = func.name().to_ascii_lowercase();
        let filter = params.filter.as_ref().map(|f| self.physical(f, input)).transpose()?;
        if matches!(name.as_str(), "first_value" | "last_value") {
            let [arg] = params.args.as_slice() else {
                return Err(unsupported(&format!("{name}() without exactly one argument")));
            };
            if params.order_by.is_empty() {
                return Err(unsupported(&format!("{name}() without ORDER BY (which row is first would be arbitrary)")));
            }
            let function = if name == "first_value" { AggFunc::FirstValue } else { AggFunc::LastValue };
            let arg_type = arg.to_field(input)?.1.data_type().clone();
            let order = self.sort_keys(&params.order_by, input)?;
            return AggCall::ordered(function, self.physical(arg, input)?, &arg_type, order, filter, output_type, text);
        }
        if name == "string_agg" {
            let [arg, separator] = params.args.as_slice() else {
                return Err(unsupported("string_agg() without a value and a separator"));
            };
            let separator = match separator {
                Expr::Literal(value, _) if !value.is_null() => value.to_string(),
                Expr::Literal(_, _) => String::new(),
                other => return Err(unsupported(&format!("string_agg() with a separator that is not a constant ({other})"))),
            };
            // Values are joined in value order; an ORDER BY of the value itself agrees with that.
            let ordered_by_value = match params.order_by.as_slice() {
                [] => true,
                [order] => order.expr == *arg && order.asc,
                _ => false,
            };
            if !ordered_by_value || params.distinct {
                return Err(unsupported("string_agg() with DISTINCT or an ORDER BY other than the value ascending"));
            }
            let arg_type = arg.to_field(input)?.1.data_type().clone();
            return AggCall::string_agg(self.physical(arg, input)?, &arg_type, separator, filter, output_type, text);
        }
        if !params.order_by.is_empty() {
            return Err(unsupported(&format!("{}(… ORDER BY …)", func.name())));
        }
        let function = match (name.as_str(), params.distinct) {
            ("count", false) => AggFunc::Count,
            ("count", true) => AggFunc::CountDistinct,
            ("sum", false) => AggFunc::Sum,
            ("avg", false) | ("mean", false) => AggFunc::Avg,
            ("min", _) => AggFunc::Min,
            ("max", _) => AggFunc::Max,
            ("bool_and", _) => AggFunc::BoolAnd,
            ("bool_or", _) => AggFunc::BoolOr,
            (other, true) => return Err(unsupported(&format!("{other}(DISTINCT …)"))),
            (other, false) => return Err(unsupported(&format!("the aggregate {other}()"))),
        };
        let [arg] = params.args.as_slice() else {
            return Err(unsupported(&format!("{name}() with {} arguments", params.args.len())));
        };
        let arg_type = arg.to_field(input)?.1.data_type().clone();
        AggCall::new(function, self.physical(arg, input)?, &arg_type, filter, output_type, text)
    }
}

/// Whether the (unoptimized) plan has a DISTINCT ON.
pub fn has_distinct_on(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found |= matches!(node, LogicalPlan::Distinct(datafusion::logical_expr::Distinct::On(_)));
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// The column and N of a filter `column <= N`, `column < N + 1`, `column = 1` (or flipped).
fn row_limit(predicate: &Expr) -> Option<(String, usize)> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return None };
    let (column, op, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
        _ => return None,
    };
    let value: i64 = match value.cast_to(&arrow::datatypes::DataType::Int64).ok()? {
        datafusion::common::ScalarValue::Int64(Some(v)) => v,
        _ => return None,
    };
    let limit = match op {
        Operator::LtEq => value,
        Operator::Lt => value - 1,
        Operator::Eq if value == 1 => 1,
        _ => return None,
    };
    (limit > 0).then(|| (column.name.clone(), limit as usize))
}

/// Plans a view's pipeline from its optimized logical plan. `view` namespaces operator state.
/// With `emit_on_window_close`, the last aggregate must group by a window that the source's
/// watermark closes; it then emits each window's final row once, when it closes.
pub fn build_pipeline(
    state: &SessionState,
    plan: &LogicalPlan,
    view: u64,
    emit_on_window_close: bool,
    state_bytes_max: usize,
    distinct_on: bool,
) -> Result<StreamPlan> {
    let mut builder = Builder::new(state, view, distinct_on, 0);
    builder.build(plan)?;
    if emit_on_window_close {
        let last = builder.aggregates.last().copied();
        match (last, builder.windows.last().copied().flatten()) {
            (Some(index), Some(_)) => builder.operators[index].set_emit_on_close(),
            _ => {
                return Err(EngineError::InvalidDefinition(
                    "EMIT ON WINDOW CLOSE needs a GROUP BY of window_start or window_end over TUMBLE or HOP on the \
                     topic's WATERMARK column"
                        .into(),
                ))
            }
        }
    }
    let inputs = match (builder.source, builder.union) {
        (Some(source), None) => vec![(source, Vec::new())],
        (None, Some(branches)) => branches,
        _ => return Err(EngineError::InvalidDefinition("a materialized view must read a topic".into())),
    };
    let sources = match &inputs[0].0.upstream {
        Upstream::View(view) => Sources::View(view.clone()),
        Upstream::Topic(_) => {
            let mut topics: Vec<Arc<TopicLog>> = Vec::new();
            for (source, _) in &inputs {
                if let Upstream::Topic(topic) = &source.upstream {
                    if !topics.iter().any(|t| t.id() == topic.id()) {
                        topics.push(topic.clone());
                    }
                }
            }
            Sources::Topics(topics)
        }
    };
    let mut branches = Vec::with_capacity(inputs.len());
    for (index, (source, operators)) in inputs.into_iter().enumerate() {
        let (topic_index, keyed) = match (&sources, &source.upstream) {
            (Sources::Topics(topics), Upstream::Topic(topic)) => {
                let topic_index = topics.iter().position(|t| t.id() == topic.id()).unwrap_or(0);
                // Each branch over a keyed table keeps its own current rows.
                let keyed = (topic.is_keyed() && source.window.is_none())
                    .then(|| super::keyed::KeyedChangelog::new(view, topic, index))
                    .transpose()?;
                (topic_index, keyed)
            }
            _ => (0, None),
        };
        branches.push(Branch { source, topic_index, keyed, operators });
    }
    let mut operators = builder.operators;
    let state_results = if builder.append_only { None } else { state_results(&mut operators) };
    Ok(StreamPlan {
        sources,
        branches,
        operators,
        schema: Arc::new(plan.schema().as_arrow().clone()),
        append_only: builder.append_only,
        state_results,
        epoch_batch_bytes: 0,
        state_bytes_max,
    })
}

/// When the last stateful operator is a top-N followed only by projections, its state can hold
/// the view's results: every partition's top rows, projected. Tells the top-N so.
fn state_results(operators: &mut [Box<dyn Operator>]) -> Option<StateResults> {
    let last = operators.iter().rposition(|o| o.projection().is_none())?;
    let layout = operators[last].top_n_layout()?;
    let tail = operators[last + 1..].iter().filter_map(|o| o.projection()).collect();
    operators[last].keep_results(true);
    Some(StateResults { layout, tail })
}
