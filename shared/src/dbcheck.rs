//! smoke_tests --database-focused: schema version and integrity on a real PostgreSQL.

use crate::report::Check;
use crate::smoke::Target;
use std::path::Path;

pub async fn checks(_t: &Target, _expect: Option<&str>, _migrations: &Path) -> Vec<Check> {
    vec![Check::fail(
        "database",
        "Database checks",
        "not implemented yet",
    )]
}
