package ssmtest

import (
	"encoding/json"
	"strconv"
	"time"
)

// The types in this file are the awsJson1.1 shapes of the operations the server speaks, with the
// member names of the SSM API model. Requests are decoded leniently (unknown members are
// ignored, as the service does); responses carry the members the SDK reads.

// epoch is a timestamp on the wire: awsJson1.1 writes timestamps as fractional seconds since the
// Unix epoch.
type epoch time.Time

// MarshalJSON writes the time as seconds with millisecond precision, like the service.
func (e epoch) MarshalJSON() ([]byte, error) {
	ms := time.Time(e).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)), nil
}

func stamp(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

type sendCommandRequest struct {
	DocumentName           string                     `json:"DocumentName"`
	DocumentVersion        string                     `json:"DocumentVersion"`
	InstanceIds            []string                   `json:"InstanceIds"`
	Targets                []json.RawMessage          `json:"Targets"`
	Parameters             map[string][]string        `json:"Parameters"`
	Comment                string                     `json:"Comment"`
	TimeoutSeconds         *int                       `json:"TimeoutSeconds"`
	MaxConcurrency         string                     `json:"MaxConcurrency"`
	MaxErrors              string                     `json:"MaxErrors"`
	OutputS3BucketName     string                     `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string                     `json:"OutputS3KeyPrefix"`
	OutputS3Region         string                     `json:"OutputS3Region"`
	CloudWatchOutputConfig cloudWatchOutputConfigJSON `json:"CloudWatchOutputConfig"`
	ServiceRoleArn         string                     `json:"ServiceRoleArn"`
}

type commandFilter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// listCommandsRequest is the input of ListCommands, and the part of a ListCommandInvocations
// request that selects and pages.
type listCommandsRequest struct {
	CommandId  string          `json:"CommandId"`
	InstanceId string          `json:"InstanceId"`
	MaxResults *int            `json:"MaxResults"`
	NextToken  string          `json:"NextToken"`
	Filters    []commandFilter `json:"Filters"`
}

type listCommandInvocationsRequest struct {
	listCommandsRequest
	Details bool `json:"Details"`
}

type getCommandInvocationRequest struct {
	CommandId  string `json:"CommandId"`
	InstanceId string `json:"InstanceId"`
	PluginName string `json:"PluginName"`
}

type cancelCommandRequest struct {
	CommandId   string   `json:"CommandId"`
	InstanceIds []string `json:"InstanceIds"`
}

type notificationConfigJSON struct {
	NotificationArn    string   `json:"NotificationArn"`
	NotificationEvents []string `json:"NotificationEvents"`
	NotificationType   string   `json:"NotificationType"`
}

type cloudWatchOutputConfigJSON struct {
	CloudWatchLogGroupName  string `json:"CloudWatchLogGroupName"`
	CloudWatchOutputEnabled bool   `json:"CloudWatchOutputEnabled"`
}

type commandJSON struct {
	CommandId              string                     `json:"CommandId"`
	DocumentName           string                     `json:"DocumentName"`
	DocumentVersion        string                     `json:"DocumentVersion"`
	Comment                string                     `json:"Comment"`
	ExpiresAfter           *epoch                     `json:"ExpiresAfter,omitempty"`
	Parameters             map[string][]string        `json:"Parameters"`
	InstanceIds            []string                   `json:"InstanceIds"`
	Targets                []json.RawMessage          `json:"Targets"`
	RequestedDateTime      *epoch                     `json:"RequestedDateTime,omitempty"`
	Status                 string                     `json:"Status"`
	StatusDetails          string                     `json:"StatusDetails"`
	OutputS3Region         string                     `json:"OutputS3Region"`
	OutputS3BucketName     string                     `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string                     `json:"OutputS3KeyPrefix"`
	MaxConcurrency         string                     `json:"MaxConcurrency"`
	MaxErrors              string                     `json:"MaxErrors"`
	TargetCount            int                        `json:"TargetCount"`
	CompletedCount         int                        `json:"CompletedCount"`
	ErrorCount             int                        `json:"ErrorCount"`
	DeliveryTimedOutCount  int                        `json:"DeliveryTimedOutCount"`
	ServiceRole            string                     `json:"ServiceRole"`
	NotificationConfig     notificationConfigJSON     `json:"NotificationConfig"`
	CloudWatchOutputConfig cloudWatchOutputConfigJSON `json:"CloudWatchOutputConfig"`
	TimeoutSeconds         int                        `json:"TimeoutSeconds"`
}

type commandPluginJSON struct {
	Name                   string `json:"Name"`
	Status                 string `json:"Status"`
	StatusDetails          string `json:"StatusDetails"`
	ResponseCode           int    `json:"ResponseCode"`
	ResponseStartDateTime  *epoch `json:"ResponseStartDateTime,omitempty"`
	ResponseFinishDateTime *epoch `json:"ResponseFinishDateTime,omitempty"`
	Output                 string `json:"Output"`
	StandardOutputUrl      string `json:"StandardOutputUrl"`
	StandardErrorUrl       string `json:"StandardErrorUrl"`
	OutputS3Region         string `json:"OutputS3Region"`
	OutputS3BucketName     string `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string `json:"OutputS3KeyPrefix"`
}

type commandInvocationJSON struct {
	CommandId              string                     `json:"CommandId"`
	InstanceId             string                     `json:"InstanceId"`
	InstanceName           string                     `json:"InstanceName"`
	Comment                string                     `json:"Comment"`
	DocumentName           string                     `json:"DocumentName"`
	DocumentVersion        string                     `json:"DocumentVersion"`
	RequestedDateTime      *epoch                     `json:"RequestedDateTime,omitempty"`
	Status                 string                     `json:"Status"`
	StatusDetails          string                     `json:"StatusDetails"`
	TraceOutput            string                     `json:"TraceOutput"`
	StandardOutputUrl      string                     `json:"StandardOutputUrl"`
	StandardErrorUrl       string                     `json:"StandardErrorUrl"`
	CommandPlugins         []commandPluginJSON        `json:"CommandPlugins"`
	ServiceRole            string                     `json:"ServiceRole"`
	NotificationConfig     notificationConfigJSON     `json:"NotificationConfig"`
	CloudWatchOutputConfig cloudWatchOutputConfigJSON `json:"CloudWatchOutputConfig"`
}

type getCommandInvocationResponse struct {
	CommandId              string                     `json:"CommandId"`
	InstanceId             string                     `json:"InstanceId"`
	Comment                string                     `json:"Comment"`
	DocumentName           string                     `json:"DocumentName"`
	DocumentVersion        string                     `json:"DocumentVersion"`
	PluginName             string                     `json:"PluginName"`
	ResponseCode           int                        `json:"ResponseCode"`
	ExecutionStartDateTime string                     `json:"ExecutionStartDateTime"`
	ExecutionElapsedTime   string                     `json:"ExecutionElapsedTime"`
	ExecutionEndDateTime   string                     `json:"ExecutionEndDateTime"`
	Status                 string                     `json:"Status"`
	StatusDetails          string                     `json:"StatusDetails"`
	StandardOutputContent  string                     `json:"StandardOutputContent"`
	StandardOutputUrl      string                     `json:"StandardOutputUrl"`
	StandardErrorContent   string                     `json:"StandardErrorContent"`
	StandardErrorUrl       string                     `json:"StandardErrorUrl"`
	CloudWatchOutputConfig cloudWatchOutputConfigJSON `json:"CloudWatchOutputConfig"`
}

// errorJSON is an awsJson1.1 error body. The SDK takes the code from __type and the message
// from "message" or "Message"; SSM's modelled errors name their member "Message", so that is
// the spelling used here, which also fills the modelled error's Message field.
type errorJSON struct {
	Type    string `json:"__type"`
	Message string `json:"Message"`
}
