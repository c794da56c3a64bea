//! Orders, their lifts, and what each gateway replica has applied.
//!
//! The order document itself is kept as JSON and interpreted by the policy
//! crate; the store only knows its id, reference and life.

use jiff::Timestamp;
use portcullis_domain::StoreVersion;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, bump_version, encode, from_millis, millis};

/// An order as stored: the applied document plus its server-side record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOrder {
    pub id: String,
    pub reference: String,
    /// The `orders apply` document, with `id` filled in.
    pub document: serde_json::Value,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The store version whose commit created the order.
    pub committed_version: StoreVersion,
    /// What a dry run reported when the order was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lift: Option<OrderLift>,
}

/// The record of lifting an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderLift {
    pub lifted_at: Timestamp,
    pub lifted_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub committed_version: StoreVersion,
}

/// One replica's last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    pub replica_id: String,
    pub applied_version: StoreVersion,
    pub applied_at: Timestamp,
    pub confirmed_at: Timestamp,
    pub started_at: Timestamp,
}

/// When a replica began (`applied`) or stopped (`lifted`) enforcing an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderApplication {
    pub order_id: String,
    pub replica_id: String,
    pub event: String,
    pub applied_at: Timestamp,
    pub applied_version: StoreVersion,
    pub streams_cut: u64,
}

/// A new order to insert.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub id: &'a str,
    pub reference: &'a str,
    pub document: &'a serde_json::Value,
    pub created_by: &'a str,
    pub preview: Option<&'a serde_json::Value>,
}

const ORDER_COLUMNS: &str = "SELECT o.id, o.reference, o.document, o.created_at, o.created_by, \
     o.committed_version, o.preview, l.lifted_at, l.lifted_by, l.reason, l.committed_version \
     FROM orders o LEFT JOIN order_lifts l ON l.order_id = o.id";

pub(crate) fn order_from_row(row: &AnyRow) -> Result<StoredOrder, StoreError> {
    let id: String = row.try_get(0)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "order",
        id: id.clone(),
        detail,
    };
    let document: String = row.try_get(2)?;
    let document = serde_json::from_str(&document).map_err(|error| corrupt(error.to_string()))?;
    let preview: Option<String> = row.try_get(6)?;
    let preview = preview
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| corrupt(error.to_string()))?;
    let lifted_at: Option<i64> = row.try_get(7)?;
    let lift = match lifted_at {
        Some(lifted_at) => Some(OrderLift {
            lifted_at: from_millis(lifted_at),
            lifted_by: row.try_get(8)?,
            reason: row.try_get(9)?,
            committed_version: row.try_get(10)?,
        }),
        None => None,
    };
    Ok(StoredOrder {
        id: id.clone(),
        reference: row.try_get(1)?,
        document,
        created_at: from_millis(row.try_get(3)?),
        created_by: row.try_get(4)?,
        committed_version: row.try_get(5)?,
        preview,
        lift,
    })
}

pub(crate) async fn load_orders(
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<StoredOrder>, StoreError> {
    sqlx::query(&format!("{ORDER_COLUMNS} ORDER BY o.created_at, o.id"))
        .fetch_all(conn)
        .await?
        .iter()
        .map(order_from_row)
        .collect()
}

impl Store {
    /// Inserts an order and returns it as stored, with the version that
    /// committed it.
    pub async fn insert_order(
        &self,
        order: NewOrder<'_>,
        now: Timestamp,
    ) -> Result<StoredOrder, StoreError> {
        let document = encode("order", order.document)?;
        let preview = order
            .preview
            .map(|preview| encode("order preview", preview))
            .transpose()?;
        let mut tx = self.begin_write().await?;
        let version = bump_version(&mut tx).await?;
        let result = sqlx::query(
            "INSERT INTO orders (id, reference, document, created_at, created_by, committed_version, preview) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(order.id)
        .bind(order.reference)
        .bind(document)
        .bind(millis(now))
        .bind(order.created_by)
        .bind(version)
        .bind(preview)
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(crate::conflict_or(error, "order", order.id));
        }
        tx.commit().await?;
        self.published(version);
        Ok(StoredOrder {
            id: order.id.to_owned(),
            reference: order.reference.to_owned(),
            document: order.document.clone(),
            created_at: from_millis(millis(now)),
            created_by: order.created_by.to_owned(),
            committed_version: version,
            preview: order.preview.cloned(),
            lift: None,
        })
    }

    /// Lifts an order. `NotFound` if there is no such order,
    /// `AlreadyExists` (what = "order lift") if it is already lifted.
    pub async fn lift_order(
        &self,
        id: &str,
        lifted_by: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<StoredOrder, StoreError> {
        let mut tx = self.begin_write().await?;
        // Write first: on SQLite a transaction that reads before its first
        // write cannot wait for the write lock (the upgrade fails at once
        // with "database is locked" while the audit writer commits).
        let version = bump_version(&mut tx).await?;
        let exists = sqlx::query("SELECT id FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound {
                what: "order",
                id: id.to_owned(),
            });
        }
        let result = sqlx::query(
            "INSERT INTO order_lifts (order_id, lifted_at, lifted_by, reason, committed_version) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(millis(now))
        .bind(lifted_by)
        .bind(reason)
        .bind(version)
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            return Err(crate::conflict_or(error, "order lift", id));
        }
        let order = sqlx::query(&format!("{ORDER_COLUMNS} WHERE o.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let order = order_from_row(&order)?;
        tx.commit().await?;
        self.published(version);
        Ok(order)
    }

    pub async fn get_order(&self, id: &str) -> Result<Option<StoredOrder>, StoreError> {
        sqlx::query(&format!("{ORDER_COLUMNS} WHERE o.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(order_from_row)
            .transpose()
    }

    pub async fn list_orders(&self) -> Result<Vec<StoredOrder>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_orders(&mut conn).await
    }

    // ---- replicas -----------------------------------------------------

    /// Records that a replica has applied `version` (at `applied_at`) and
    /// last confirmed it is current at `confirmed_at`. Does not bump the
    /// store version.
    pub async fn report_replica(
        &self,
        replica_id: &str,
        version: StoreVersion,
        applied_at: Timestamp,
        confirmed_at: Timestamp,
        started_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replicas (replica_id, applied_version, applied_at, confirmed_at, started_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (replica_id) DO UPDATE SET \
             applied_version = excluded.applied_version, applied_at = excluded.applied_at, \
             confirmed_at = excluded.confirmed_at, started_at = excluded.started_at",
        )
        .bind(replica_id)
        .bind(version)
        .bind(millis(applied_at))
        .bind(millis(confirmed_at))
        .bind(millis(started_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        sqlx::query(
            "SELECT replica_id, applied_version, applied_at, confirmed_at, started_at \
             FROM replicas ORDER BY replica_id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(ReplicaStatus {
                replica_id: row.try_get(0)?,
                applied_version: row.try_get(1)?,
                applied_at: from_millis(row.try_get(2)?),
                confirmed_at: from_millis(row.try_get(3)?),
                started_at: from_millis(row.try_get(4)?),
            })
        })
        .collect()
    }

    /// Records when a replica began or stopped enforcing an order. The
    /// first report per (order, replica, event) wins: a replica restarting
    /// later does not move the moment enforcement began.
    pub async fn record_order_application(
        &self,
        application: &OrderApplication,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO order_applications (order_id, replica_id, event, applied_at, applied_version, streams_cut) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, replica_id, event) DO NOTHING",
        )
        .bind(&application.order_id)
        .bind(&application.replica_id)
        .bind(&application.event)
        .bind(millis(application.applied_at))
        .bind(application.applied_version)
        .bind(i64::try_from(application.streams_cut).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn order_applications(
        &self,
        order_id: &str,
    ) -> Result<Vec<OrderApplication>, StoreError> {
        sqlx::query(
            "SELECT order_id, replica_id, event, applied_at, applied_version, streams_cut \
             FROM order_applications WHERE order_id = $1 ORDER BY applied_at, replica_id",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let streams_cut: i64 = row.try_get(5)?;
            Ok(OrderApplication {
                order_id: row.try_get(0)?,
                replica_id: row.try_get(1)?,
                event: row.try_get(2)?,
                applied_at: from_millis(row.try_get(3)?),
                applied_version: row.try_get(4)?,
                streams_cut: u64::try_from(streams_cut).unwrap_or(0),
            })
        })
        .collect()
    }
}
