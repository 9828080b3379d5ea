//! The REST source: pages are fetched one after another; the first ones (up to
//! [`SAMPLE_RECORDS`] records) are held to infer the schema, then every page is cut into
//! batches by the byte budget and sent on while the next page is fetched. A page is parsed
//! whole, so it may be at most what the step's memory budget holds ([`PageLimit`]); a larger
//! one fails the read as soon as its size shows, before it is held. Incremental reads
//! send the watermark in `cursorParam` and drop records at or below it, in case the API's
//! filter is inclusive.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use reqwest::Url;
use serde_json::{Map, Value};

use super::config::{Asset, PageLimit, RestConfig};
use super::connect::{Client, HttpError};
use super::pagination::{Next, Paginator, Response, set_param};
use super::records::{RecordsPath, locate};
use crate::connectors::formats::infer::SAMPLE_RECORDS;
use crate::connectors::json_table::{Converter, Emitter, Inference};
use crate::connectors::json_widen::Widening;
use crate::engine::{Counters, ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

/// Reads API paths of one REST Connection.
pub struct RestSource {
    settings: RestConfig,
}

impl RestSource {
    pub fn new(settings: RestConfig) -> Self {
        Self { settings }
    }
}

/// One fetched page: its records taken out of the body, and the body's size.
struct Page {
    number: u64,
    url: String,
    records: Vec<Map<String, Value>>,
    bytes: usize,
}

/// Fetches pages in order.
struct Pager {
    client: Client,
    settings: RestConfig,
    asset: Asset,
    paginator: Paginator,
    next: Option<Url>,
    path: Option<RecordsPath>,
    /// Where the style `auto` chooses is told, until it is: the step's counters and the
    /// message's beginning.
    announce: Option<(Arc<Counters>, String)>,
}

impl Pager {
    async fn page(&mut self) -> Result<Option<Page>> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let number = self.paginator.pages() + 1;
        let fetched = match self.client.get(&url, number).await {
            Ok(fetched) => fetched,
            Err(mut e) => {
                if let Some((trying, signal)) = self.paginator.probing() {
                    e.message = format!(
                        "{}; pagination auto sent {trying} to learn how the API pages, because page 1 says {signal}: set pagination.kind (and param) to what the API documents",
                        e.message
                    );
                }
                return Err(service(&self.settings.at(), e));
            }
        };
        let shown = self.client.shown(&url);
        let mut body: Value = serde_json::from_slice(&fetched.body).map_err(|e| {
            Error::protocol(
                self.settings.at(),
                format!("page {number} ({shown}) is not valid JSON: {e}; nothing was written"),
            )
        })?;
        let path = match &self.path {
            Some(p) => p.clone(),
            None => {
                let found = locate(&body, self.asset.records_path.as_deref()).map_err(|e| {
                    Error::Config(format!(
                        "{}: page {number} ({shown}): {e}",
                        self.settings.at()
                    ))
                })?;
                self.path.insert(found).clone()
            }
        };
        let next = {
            let records = path.records(&body).map_err(|e| {
                Error::Config(format!(
                    "{}: page {number} ({shown}): {e}",
                    self.settings.at()
                ))
            })?;
            let response = Response {
                url: &url,
                link: fetched.link.as_deref(),
                body: &body,
                records,
            };
            self.paginator.next(&response).map_err(|e| {
                Error::Config(
                    self.settings
                        .redactor
                        .redact(format!("{}: {e}", self.settings.at())),
                )
            })?
        };
        if self.paginator.is_auto()
            && let Some(style) = self.paginator.describe()
            && let Some((counters, at)) = self.announce.take()
        {
            counters.note(format!("{at}: pagination auto chose {style}"));
        }
        let (next, keep) = match next {
            Next::Url(u) => (Some(u), true),
            Next::Skip(u) => (Some(u), false),
            Next::Done => (None, true),
        };
        self.next = next;
        let records = match body.pointer_mut(&path.0).map(Value::take) {
            Some(Value::Array(items)) if keep => items.into_iter().map(document).collect(),
            _ => Vec::new(),
        };
        Ok(Some(Page {
            number,
            url: shown,
            records,
            bytes: fetched.body.len(),
        }))
    }
}

/// A record as a document: objects as they are, anything else as `{"value": …}`.
fn document(record: Value) -> Map<String, Value> {
    match record {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

#[async_trait]
impl Source for RestSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let asset = Asset::new(&self.settings, &request.spec)?;
        let mut client = Client::new(&self.settings, &asset.headers)
            .map_err(|e| service(&self.settings.at(), e))?;
        client.limit_pages(PageLimit::within(&request.memory));
        let mut url = asset.url.clone();
        if let Some(filter) = &request.filter {
            let Some(param) = &self.settings.cursor_param else {
                return Err(Error::Config(format!(
                    "{}: incremental reads need rest.cursorParam (the query parameter that takes the watermark)",
                    self.settings.at()
                )));
            };
            set_param(&mut url, param, &filter.after);
        }
        let paginator = Paginator::new(self.settings.pagination.clone());
        let first = paginator.first_url(url);
        let mut pager = Pager {
            client,
            settings: self.settings.clone(),
            asset: asset.clone(),
            paginator,
            next: Some(first),
            path: None,
            announce: Some((
                request.rejects.counters().clone(),
                format!(
                    "{}: asset \"{}\"",
                    self.settings.at(),
                    request.spec.asset.fqn
                ),
            )),
        };
        // Sample: hold pages until enough records were seen to infer the schema.
        let mut held = Vec::new();
        let mut inference = Inference::new(asset.nested);
        let mut sampled = 0;
        while sampled < SAMPLE_RECORDS {
            let Some(page) = pager.page().await? else {
                break;
            };
            for record in page.records.iter().take(SAMPLE_RECORDS - sampled) {
                inference.observe(record);
            }
            sampled += page.records.len();
            held.push(page);
        }
        let schema: SchemaRef = Arc::new(inference.schema(&request.spec.columns)?);
        let converter = Converter::new(schema.clone(), asset.nested);
        let mut context = Emitter {
            converter,
            widening: Widening::new(&request.spec.columns, asset.nested),
            rejects: request.rejects.clone(),
            filter: request.filter.clone(),
            batch_bytes: request.batch_bytes,
        };
        let at = self.settings.at();
        Ok(SchemaStream::produced_by(schema, move |tx| async move {
            let mut held = held.into_iter();
            loop {
                let page = match held.next() {
                    Some(page) => page,
                    None => match pager.page().await? {
                        Some(page) => page,
                        None => break,
                    },
                };
                let location = format!("{at}: page {} ({})", page.number, page.url);
                if !context
                    .emit(page.records, page.bytes, location, &tx)
                    .await?
                {
                    return Ok(());
                }
            }
            context.finish()
        }))
    }
}

/// A failed request as the step's error; its message already starts with the Connection.
fn service(at: &str, e: HttpError) -> Error {
    let detail = match e
        .message
        .strip_prefix(at)
        .and_then(|m| m.strip_prefix(": "))
    {
        Some(detail) => detail.to_string(),
        None => e.message,
    };
    match e.source {
        Some(source) => Error::database_detail(at, detail, source),
        None => Error::protocol(at, detail),
    }
}
