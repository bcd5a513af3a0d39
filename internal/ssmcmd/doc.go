// Package ssmcmd is what fleetrun's SSM commands are made of, apart from the SDK: the script's
// S3 location and the submit-time check of scriptUrl, the command line, and the S3 keys under
// which the agent writes each device's output. The API functions check submissions and serve
// output with it without linking the SSM client; package ssmrun sends the commands.
package ssmcmd
