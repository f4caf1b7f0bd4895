//! Filters as resources, and what a filter sees of a request: the items'
//! fields, the user's events and fields, the request's current item.

use crate::Service;
use crate::catalogue::Fields;
use crate::error::{Result, ServiceError};
use crate::serving::Deployment;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, Weak};
use travelrec_engine::filter::{BoundFilter, EventTypes, Filter as Expression, FilterContext, FilterError, ItemMask};
use travelrec_engine::{HistoryEvent, Model};
use travelrec_store::{DatasetGroup, Filter, Lifecycle, ResourceKind, Status, validate_name};

impl Service {
    /// Creates a filter after checking its expression (errors name the position).
    pub async fn create_filter(&self, name: &str, dataset_group_arn: &str, expression: &str) -> Result<Filter> {
        validate_name(name).map_err(ServiceError::invalid)?;
        self.describe::<DatasetGroup>(dataset_group_arn).await?;
        let parsed = Expression::parse(expression).map_err(|e| ServiceError::invalid(format!("filterExpression: {e}")))?;
        let filter = Filter {
            name: name.to_string(),
            filter_arn: self.config().arns.arn(ResourceKind::Filter, name),
            dataset_group_arn: dataset_group_arn.to_string(),
            filter_expression: expression.to_string(),
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(filter.clone()).await?;
        let cached = ParsedFilter::new(filter.dataset_group_arn.clone(), parsed);
        self.inner.filters.insert(filter.filter_arn.clone(), Arc::new(cached));
        Ok(filter)
    }

    pub async fn delete_filter(&self, arn: &str) -> Result<()> {
        self.describe::<Filter>(arn).await?;
        self.store_dyn().delete_resource(arn).await?;
        self.inner.filters.remove(arn);
        Ok(())
    }

    /// The filter at `arn` with its placeholders filled, for a request to
    /// `deployment`. A filter on the items' own fields gives the same verdict
    /// in every request: it is computed once per deployment and these values,
    /// then reused (no field is read per item per request).
    pub(crate) async fn request_filter(
        &self,
        deployment: &Deployment,
        arn: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<RequestFilter> {
        let parsed = self.parsed_filter(arn, &deployment.dataset_group_arn).await?;
        // A mask is only kept for values that bound before: no need to bind again.
        if let Some(mask) = deployment.cached_item_mask(&parsed, arn, values) {
            return Ok(RequestFilter::Items(mask));
        }
        let bound = parsed.bind(values).map_err(|e| ServiceError::invalid(format!("filterValues for {arn}: {e}")))?;
        if !bound.looks_at_items_only() {
            return Ok(RequestFilter::Bound(bound));
        }
        Ok(RequestFilter::Items(deployment.item_mask(&parsed, arn, values, || {
            let context = RequestFilterContext::items_only(&deployment.model, &deployment.item_fields);
            bound.item_mask(deployment.model.items.len(), &context)
        })))
    }

    /// The filter at `arn`, parsed once, checked to belong to `group_arn`.
    async fn parsed_filter(&self, arn: &str, group_arn: &str) -> Result<Arc<ParsedFilter>> {
        let parsed = match self.inner.filters.get(arn).map(|f| f.clone()) {
            Some(parsed) => parsed,
            None => {
                let filter: Filter = self.describe(arn).await?;
                let expression = Expression::parse(&filter.filter_expression).map_err(|e| ServiceError::internal(e.to_string()))?;
                let parsed = Arc::new(ParsedFilter::new(filter.dataset_group_arn, expression));
                self.inner.filters.insert(arn.to_string(), parsed.clone());
                parsed
            }
        };
        // Checked on every use, cached or not: a filter serves its own group only.
        if parsed.dataset_group_arn != group_arn {
            return Err(ServiceError::invalid(format!(
                "filter {arn} belongs to {}, not to the campaign's {group_arn}",
                parsed.dataset_group_arn
            )));
        }
        Ok(parsed)
    }
}

/// A filter ready for one request.
pub(crate) enum RequestFilter {
    /// On the items' own fields: its verdict per item, shared by requests.
    Items(Arc<ItemMask>),
    /// Looks at the user, their events or the current item: evaluated per request.
    Bound(Arc<BoundFilter>),
}

impl RequestFilter {
    /// Whether evaluating it needs the request's [`RequestFilterContext`].
    pub fn needs_request(&self) -> bool {
        matches!(self, RequestFilter::Bound(_))
    }

    /// Rejects items (score `-inf`); `context` is needed by a [`RequestFilter::Bound`] filter only.
    pub fn apply(&self, scores: &mut [f32], context: Option<&RequestFilterContext<'_>>) {
        match (self, context) {
            (RequestFilter::Items(mask), _) => mask.apply(scores),
            (RequestFilter::Bound(bound), Some(context)) => bound.apply(scores, context),
            (RequestFilter::Bound(_), None) => unreachable!("a request-dependent filter is applied with its request's context"),
        }
    }

    pub fn allows(&self, item: u32, context: Option<&RequestFilterContext<'_>>) -> bool {
        match (self, context) {
            (RequestFilter::Items(mask), _) => mask.allows(item),
            (RequestFilter::Bound(bound), Some(context)) => bound.allows(item, context),
            (RequestFilter::Bound(_), None) => unreachable!("a request-dependent filter is applied with its request's context"),
        }
    }
}

/// Item masks of the filters a deployment has served, by filter ARN, then
/// values (looked up by reference: a request copies no key). Bounded: when
/// full it starts over (the masks are cheap to recompute, and a few hot
/// filters make up nearly all traffic).
#[derive(Default)]
pub(crate) struct ItemMasks {
    entries: HashMap<String, HashMap<BTreeMap<String, String>, CachedMask>>,
    bytes: usize,
}

struct CachedMask {
    /// The parsed filter the mask was computed from: a filter deleted and
    /// created again under the same ARN is a different one.
    filter: Weak<ParsedFilter>,
    mask: Arc<ItemMask>,
}

/// How much memory a deployment's item masks may hold.
const ITEM_MASKS_BYTES: usize = 16 << 20;

impl ItemMasks {
    pub fn get(&self, filter: &Arc<ParsedFilter>, arn: &str, values: &BTreeMap<String, String>) -> Option<Arc<ItemMask>> {
        let cached = self.entries.get(arn).and_then(|by_values| by_values.get(values))?;
        cached.filter.upgrade().is_some_and(|f| Arc::ptr_eq(&f, filter)).then(|| cached.mask.clone())
    }

    pub fn get_or_insert(
        &mut self,
        filter: &Arc<ParsedFilter>,
        arn: &str,
        values: &BTreeMap<String, String>,
        compute: impl FnOnce() -> ItemMask,
    ) -> Arc<ItemMask> {
        if let Some(mask) = self.get(filter, arn, values) {
            return mask;
        }
        let mask = Arc::new(compute());
        if self.bytes + mask.bytes() > ITEM_MASKS_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += mask.bytes();
        let entry = CachedMask { filter: Arc::downgrade(filter), mask: mask.clone() };
        if let Some(replaced) = self.entries.entry(arn.to_string()).or_default().insert(values.clone(), entry) {
            self.bytes -= replaced.mask.bytes();
        }
        mask
    }
}

/// The event types a user has per item, built per request in one pass over
/// their history: items sorted for binary search, each with a mask of event
/// types (bit = index into the type names; types past the 63rd share the last
/// bit).
pub(crate) struct UserEvents {
    /// The user's items, sorted.
    item_ids: Vec<u32>,
    /// Per item in `item_ids`, its event types.
    masks: Vec<u64>,
    /// The type names by bit when the user has tracked events of types the
    /// model has not seen (the model's types, then those); `None`: the model's.
    names: Option<Vec<String>>,
}

impl UserEvents {
    /// From events of the model's types, and `unseen`: items with a type the
    /// model has not seen (tracked since training), by name, so a filter on
    /// that type still finds them. Events marked `UNKNOWN_TYPE` are taken
    /// from `unseen` only when it is given.
    pub fn new<'e>(model_types: &[String], events: impl Iterator<Item = &'e HistoryEvent>, unseen: &[(u32, Arc<str>)]) -> Self {
        let mut names: Option<Vec<String>> = None;
        // Item and type bit in one number: a sort of plain integers.
        let mut keys: Vec<u64> = events
            .filter(|e| unseen.is_empty() || e.event_type != HistoryEvent::UNKNOWN_TYPE)
            .map(|e| (u64::from(e.item) << 6) | u64::from(e.event_type.min(63)))
            .collect();
        for (item, name) in unseen {
            let names = names.get_or_insert_with(|| model_types.to_vec());
            let bit = names.iter().position(|n| **n == **name).unwrap_or_else(|| {
                names.push(name.to_string());
                names.len() - 1
            });
            keys.push((u64::from(*item) << 6) | bit.min(63) as u64);
        }
        keys.sort_unstable();
        let mut item_ids: Vec<u32> = Vec::with_capacity(keys.len());
        let mut masks: Vec<u64> = Vec::with_capacity(keys.len());
        for key in keys {
            let (item, bit) = ((key >> 6) as u32, 1u64 << (key & 63));
            match (item_ids.last(), masks.last_mut()) {
                (Some(&last), Some(mask)) if last == item => *mask |= bit,
                _ => {
                    item_ids.push(item);
                    masks.push(bit);
                }
            }
        }
        Self { item_ids, masks, names }
    }

    /// The event types on `item`; `model_types` names them unless the user
    /// has types the model has not seen.
    fn types<'a>(&'a self, model_types: &'a [String], item: u32) -> EventTypes<'a> {
        let mask = self.item_ids.binary_search(&item).map_or(0, |at| self.masks[at]);
        EventTypes::from_mask(self.names.as_deref().unwrap_or(model_types), mask)
    }
}

/// A filter's expression, parsed once, and the dataset group it belongs to.
pub(crate) struct ParsedFilter {
    dataset_group_arn: String,
    expression: Expression,
    /// The expression bound without values, once it has bound: most filters
    /// ("not what the user booked") have no placeholders.
    without_values: OnceLock<Arc<BoundFilter>>,
}

impl ParsedFilter {
    fn new(dataset_group_arn: String, expression: Expression) -> Self {
        Self { dataset_group_arn, expression, without_values: OnceLock::new() }
    }

    fn bind(&self, values: &BTreeMap<String, String>) -> std::result::Result<Arc<BoundFilter>, FilterError> {
        if !values.is_empty() {
            return Ok(Arc::new(self.expression.bind(values)?));
        }
        if let Some(bound) = self.without_values.get() {
            return Ok(bound.clone());
        }
        let bound = Arc::new(self.expression.bind(values)?);
        Ok(self.without_values.get_or_init(|| bound).clone())
    }
}

/// What a filter may look at for one request.
pub(crate) struct RequestFilterContext<'a> {
    pub model: &'a Model,
    /// Fields by model item index.
    pub item_fields: &'a [Fields],
    /// Event types the user has, by model item index.
    pub user_events: UserEvents,
    pub user_fields: Option<Fields>,
    pub current_item: Option<u32>,
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

impl<'a> RequestFilterContext<'a> {
    /// What a filter on the items' own fields sees: no user, no current item.
    pub fn items_only(model: &'a Model, item_fields: &'a [Fields]) -> Self {
        Self {
            model,
            item_fields,
            user_events: UserEvents::new(&model.event_types, std::iter::empty(), &[]),
            user_fields: None,
            current_item: None,
        }
    }
}

impl FilterContext for RequestFilterContext<'_> {
    fn item_field(&self, item: u32, name: &str) -> Option<&str> {
        if name == "ITEM_ID" {
            return Some(self.model.item_id(item));
        }
        self.item_fields.get(item as usize).and_then(|fields| field(fields, name))
    }

    fn item_id(&self, item: u32) -> &str {
        self.model.item_id(item)
    }

    fn user_event_types(&self, item: u32) -> EventTypes<'_> {
        self.user_events.types(&self.model.event_types, item)
    }

    fn user_items(&self) -> Option<&[u32]> {
        Some(&self.user_events.item_ids)
    }

    fn user_field(&self, name: &str) -> Option<&str> {
        self.user_fields.as_deref().and_then(|fields| field(fields, name))
    }

    fn current_item_field(&self, name: &str) -> Option<&str> {
        self.current_item.and_then(|item| self.item_field(item, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(item: u32, event_type: u16) -> HistoryEvent {
        HistoryEvent { item, event_type, timestamp: 0, value: f32::NAN }
    }

    fn names(user: &UserEvents, model_types: &[String], item: u32) -> Vec<String> {
        user.types(model_types, item).names().map(str::to_string).collect()
    }

    #[test]
    fn user_events_merge_each_items_types() {
        let model_types: Vec<String> = ["view", "click"].iter().map(|s| s.to_string()).collect();
        let events = [event(5, 1), event(2, 0), event(5, 0), event(9, HistoryEvent::UNKNOWN_TYPE), event(5, 1), event(2, 70)];
        let user = UserEvents::new(&model_types, events.iter(), &[]);
        assert_eq!(user.item_ids, [2, 5, 9]);
        assert_eq!(user.masks, [1 | 1 << 63, 0b11, 1 << 63], "types past the 63rd share the last bit");
        assert_eq!(names(&user, &model_types, 5), ["view", "click"]);
        assert!(!user.types(&model_types, 9).is_empty(), "a type without a name is still an event");
        assert!(user.types(&model_types, 7).is_empty(), "no events on an item the user never touched");
    }

    #[test]
    fn tracked_types_the_model_has_not_seen_keep_their_names() {
        let model_types: Vec<String> = ["view", "click"].iter().map(|s| s.to_string()).collect();
        let events = [event(5, 1), event(3, HistoryEvent::UNKNOWN_TYPE), event(5, HistoryEvent::UNKNOWN_TYPE)];
        let user = UserEvents::new(&model_types, events.iter(), &[(3, "book".into()), (5, "wishlist".into()), (5, "book".into())]);
        assert_eq!(user.item_ids, [3, 5]);
        assert_eq!(names(&user, &model_types, 3), ["book"]);
        assert_eq!(names(&user, &model_types, 5), ["click", "book", "wishlist"]);
        let plain = UserEvents::new(&model_types, events[..1].iter(), &[]);
        assert!(plain.names.is_none(), "the model's names are borrowed when every type is known");
    }
}
