// Package webhook posts fleetrun's webhook events to the URLs tasks name in notify, following
// the Standard Webhooks specification (standardwebhooks.com): every request carries
// webhook-id (the event's id, the same on every attempt), webhook-timestamp (Unix seconds) and
// webhook-signature ("v1," and the base64 HMAC-SHA256 of "id.timestamp.body" under the
// deployment's secret, "whsec_" and base64). The body is the task as its event stream carries
// it, with a "type" member.
//
// It is also where fleetrun refuses to be turned against its own network (server-side request
// forgery). Policy decides which URLs a task may name: https, or with AllowLoopback (the local
// server's --allow-http-webhooks) http to the loopback interface; and never a host that
// resolves to a private, loopback (without AllowLoopback), link-local, metadata or otherwise
// reserved address. It is checked when a task is submitted, and again on every connection the
// Sender makes: the dialer checks the address it is about to connect to, after resolution, so
// a name that resolves to a public address at submit time and to an internal one later (DNS
// rebinding) is refused. The Sender follows no redirects and uses no proxy.
//
// Loop is `fleetrun serve`'s delivery loop over the embedded store's outbox; on AWS the
// WebhookFunction does the same work from its queue. Both hand each due event to the engine,
// which makes the attempt with a Sender, records it, and decides the retry.
package webhook
