// Package dynamo is fleetrun's production task store: task.Store on one DynamoDB table, plus
// the command bookkeeping the SSM runner and the progress function need.
//
// # Table schema
//
// The SAM template must define exactly this table (CreateTableInput builds the same thing in
// code, for tests and local use):
//
//	Type: AWS::DynamoDB::Table
//	Properties:
//	  BillingMode: PAY_PER_REQUEST
//	  AttributeDefinitions:
//	    - {AttributeName: pk, AttributeType: S}
//	    - {AttributeName: sk, AttributeType: S}
//	    - {AttributeName: gsi1pk, AttributeType: S}
//	    - {AttributeName: gsi1sk, AttributeType: S}
//	    - {AttributeName: gsi2pk, AttributeType: S}
//	    - {AttributeName: gsi2sk, AttributeType: S}
//	  KeySchema:
//	    - {AttributeName: pk, KeyType: HASH}
//	    - {AttributeName: sk, KeyType: RANGE}
//	  GlobalSecondaryIndexes:
//	    - IndexName: gsi1
//	      KeySchema:
//	        - {AttributeName: gsi1pk, KeyType: HASH}
//	        - {AttributeName: gsi1sk, KeyType: RANGE}
//	      Projection: {ProjectionType: ALL}
//	    - IndexName: gsi2
//	      KeySchema:
//	        - {AttributeName: gsi2pk, KeyType: HASH}
//	        - {AttributeName: gsi2sk, KeyType: RANGE}
//	      Projection: {ProjectionType: KEYS_ONLY}
//	  TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
//
// The store calls GetItem, BatchGetItem, Query (on the table and on gsi1), PutItem (a webhook
// delivery record), UpdateItem,
// TransactWriteItems (whose Put, Update and ConditionCheck actions need dynamodb:PutItem,
// dynamodb:UpdateItem and dynamodb:ConditionCheckItem) and BatchWriteItem (to stamp the expiry
// of a finished task's items); DeleteExpired alone adds Scan and deletes through
// BatchWriteItem. SAM's DynamoDBCrudPolicy covers all of these.
//
// Every item has a "type" attribute naming its kind. The items are:
//
//	kind          pk                     sk                 what it holds
//	task          TASK#<taskId>          TASK               the task, its counters, gsi1 keys
//	device        TASK#<taskId>          DEVICE#<deviceId>  one device, once it has an update
//	command       TASK#<taskId>          COMMAND#<batch>    batch (6 digits) → SSM command id
//	ids           TASK#<taskId>          IDS#<n>            part n of an oversized device list
//	relaunch      TASK#<taskId>          RELAUNCH#<createdAt>#<id>  task id relaunched this task
//	commandTask   COMMAND#<commandId>    COMMAND            SSM command id → task id
//	idempotency   IDEM#<sha256(owner, key)>  IDEM           an owner's Idempotency-Key
//	delivery      TASK#<taskId>          HOOK#<eventAt>#<eventId>#<attempt>  one webhook attempt
//
// The task item keeps the request's device ids as gzip'd JSON in the binary attribute
// "deviceIds", so that a 10,000-device submit is one TransactWriteItems of two actions (the
// task and its idempotency record) and reading a task is one GetItem. Only when a device list
// does not compress below the item size limit (long random local ids) is it split over "ids"
// items written in the same transaction. Devices have no item until their first update: a
// device without one is pending. The task item counts devices per status in the number
// attributes c_pending, c_running, c_succeeded, c_failed, c_timed_out, c_cancelled and
// c_undeliverable (c_total is fixed), changed in the same transaction as the device items, so
// progress is read without touching a device.
//
// Unfinished tasks are in the sparse index gsi2 (IndexOpen), for the sweep: a task with a lease
// (Task.Lease, see engine.Leases) has gsi2pk = "OPEN", gsi2sk = "<lease>#<taskId>" at the same
// fixed width, and "lease" (Unix nanoseconds, for exact comparisons); Renew moves them, and the
// transition that ends a task removes all three, so the index holds only what the sweep may
// need. Its projection is the keys alone: the sweep reads each due task itself.
//
// Listing by owner uses gsi1: gsi1pk = "OWNER#<owner>", gsi1sk = "<createdAt>#<taskId>" with
// createdAt in UTC at a fixed width of nine fractional digits, so that sort order is time
// order; the store queries it with ScanIndexForward false, newest first. Listing the tasks
// relaunched from a task is a strongly consistent Query of the relaunch items in that task's
// partition, written in the same transaction as each relaunched task, newest first too.
//
// # Expiry
//
// A finished task, and when its terminal transition is written its command and command-mapping
// items, carry "ttl" (Unix seconds, rounded up, for DynamoDB's TTL) and "exp" (Unix
// nanoseconds, for exact comparisons). Idempotency records carry both from the start, and
// relaunch items the latest expiry their relaunched task can have. Device
// items carry both from their first write when the store knows the retention
// (Options.Retention): the task's deadline plus the retention and a day, which outlasts the
// task, so finishing a 10,000-device task does not rewrite 10,000 items; a device item whose
// bound would fall short of its task's expiry is given the task's at the end, like the rest.
// A webhook delivery record takes its task's expiry when the task has one, and otherwise the
// bound of the task's device items, and is stamped with the task's expiry when it ends.
// DynamoDB deletes expired items up to days late, so every read treats an item whose exp has
// passed as absent, and an expired idempotency record may be overwritten. DeleteExpired does
// the deletion itself; it exists for emulators, which never run TTL, and as a safety net.
//
// # Concurrency
//
// Every status change is conditional. A task transition is one UpdateItem conditioned on the
// status and version. Device updates are TransactWriteItems of at most 100 actions: the device
// items, each conditioned on the status the store read, and one update of the task that adds
// the counter deltas and one to the version, conditioned on the task not being terminal. A
// transaction cancelled because another writer moved a device is re-planned from a fresh read,
// so duplicated and reordered updates are applied at most once and never backwards.
package dynamo
