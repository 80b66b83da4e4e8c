use uuid::Uuid;

/// Keyset pagination over UUIDv7 ids (time-ordered), so pages stay stable while rows are added.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: u64,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// `rows` were fetched with `limit + 1`; the extra row only says there is a next page.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() as u64 > request.limit;
        rows.truncate(request.limit as usize);
        let next_cursor = if more { rows.last().map(id) } else { None };
        Page { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}
