// Package lambdahttp serves a plain net/http handler behind an API Gateway HTTP API, through
// the Lambda proxy integration's payload format 2.0. The Lambda functions wrap the same
// httpapi handler that `fleetrun serve` listens with, so the API behaves the same in both homes.
//
// # Why a small adapter of our own
//
// github.com/awslabs/aws-lambda-go-api-proxy (httpadapter, payload 2.0) was the candidate
// library. It does not fit cleanly here, for reasons that matter to this API:
//
//   - It does not strip a named stage from rawPath (an HTTP API puts "/prod" in front of every
//     path outside the $default stage), and strips a custom domain's base path only when the
//     path is configured in advance; it cannot build a Location that is right in all of
//     $default, named stages and custom domains with or without a base path.
//   - It splits every header not on a short list at commas, which breaks values that contain
//     commas but are not lists (If-Modified-Since dates, quoted entity tags).
//   - Its response writer does not implement Flush, and buffers forever, so a Server-Sent
//     Events stream either stops after one event or runs until the function times out.
//   - Its module requires the Gin, Echo, Fiber, Iris and Chi adapters and their dependencies.
//
// aws-lambda-go itself only has the event types, which this package uses. The adapter below
// is about four hundred lines with table tests of its own.
//
// # Paths, stages and custom domains
//
// API Gateway keeps the stage (outside $default) and a custom domain's API mapping key in
// rawPath, while the route key names the path as the API defines it. The adapter lines the
// route key's template up with the end of rawPath: what is left in front is the prefix the
// caller used, which it strips for routing and keeps for BaseURL, so links and Location
// headers point at the URL the caller actually called. Where the route key is $default or a
// greedy {proxy+} route, it falls back to stripping a named stage.
//
// # Buffered responses
//
// API Gateway buffers a Lambda's whole response. Flush therefore cannot send part of one; the
// adapter treats the first Flush of a non-empty body as the end of the response: it ends the
// request's context, which makes a streaming handler return, and the client receives what was
// written so far. An event stream thus behaves as a long-poll that the client re-opens with
// Last-Event-ID. The request's context also ends a little before the function's own deadline,
// so that a handler still waiting returns in time for an answer to be sent.
package lambdahttp
