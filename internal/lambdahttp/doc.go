// Package lambdahttp serves a plain net/http handler behind an API Gateway REST API, through
// the Lambda proxy integration (payload format 1.0), buffered or streamed. The Lambda
// functions wrap the same httpapi handler that `fleetrun serve` listens with, so the API
// behaves the same in both homes.
//
// # Why a small adapter of our own
//
// github.com/awslabs/aws-lambda-go-api-proxy (httpadapter) was the candidate library. It does
// not fit cleanly here, for reasons that matter to this API:
//
//   - Its response writer does not implement Flush and buffers forever, and it has no
//     streamed answer at all, so the event stream could not be streamed.
//   - It builds no base URL from the request context: a Location must point at the stage or
//     the custom domain's base path the caller used.
//   - Its module requires the Gin, Echo, Fiber, Iris and Chi adapters and their dependencies.
//
// aws-lambda-go itself has the event types, and for the streamed answer
// events.APIGatewayProxyStreamingResponse, which this package uses: it writes the JSON
// prelude (status and headers), the eight NUL bytes API Gateway expects after it, and then
// the body as it is read. The adapter is a few hundred lines with table tests of its own.
//
// # Paths, stages and custom domains
//
// API Gateway gives the API's own path in the event's path, and the caller's whole path in
// the request context's: what the second has in front of the first is the prefix the caller
// used (the stage on the execute-api endpoint, "/v1"; a custom domain's base path), which
// BaseURL keeps, so that links and Location headers point at the URL the caller actually
// called.
//
// # Buffered and streamed routes
//
// API Gateway buffers a Lambda's whole answer unless the integration streams it
// (ResponseTransferMode RESPONSE_STREAM, invoked with InvokeWithResponseStream). Options.Streamed
// names the resources whose integration streams: their requests run for up to 15 minutes (the
// function's deadline, or StreamLimit), the handler writes into a pipe the runtime reads, and
// what it writes reaches the client as it is written. Every other request is buffered and
// bounded by API Gateway's 29 seconds (BufferedLimit); there Flush cannot send part of an
// answer, so the first Flush of a non-empty body ends the request's context, which makes a
// waiting handler return, and the client receives what was written so far. A request's
// context ends a little before its deadline (Options.Reserve), so that a handler still waiting
// returns in time for its answer to be sent.
package lambdahttp
