//! Names, as the API accepts them.

/// The schema of a name as the API accepts it (tenants, nodes, sensors, a worker's version):
/// 1–200 characters, not only whitespace, no control characters (the API trims it, so surrounding
/// spaces are allowed).
pub struct NameSchema;

impl utoipa::PartialSchema for NameSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        const NO_CONTROL: &str = "\\u0000-\\u001F\\u007F-\\u009F";
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .min_length(Some(1))
            .max_length(Some(200))
            .pattern(Some(format!("^[^{NO_CONTROL}]*[^\\s{NO_CONTROL}][^{NO_CONTROL}]*$")))
            .examples(["Branch office"])
            .into()
    }
}

impl utoipa::ToSchema for NameSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Name")
    }
}
