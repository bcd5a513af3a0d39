package ssmtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// InvocationEventType is the detail-type of the event SSM sends to EventBridge when an
// invocation changes status.
const InvocationEventType = "EC2 Command Invocation Status-change Notification"

// Event is an EventBridge event in the shape AWS delivers it to a rule's target.
type Event struct {
	Version    string      `json:"version"`
	ID         string      `json:"id"`
	DetailType string      `json:"detail-type"`
	Source     string      `json:"source"`
	Account    string      `json:"account"`
	Time       string      `json:"time"`
	Region     string      `json:"region"`
	Resources  []string    `json:"resources"`
	Detail     EventDetail `json:"detail"`
}

// EventDetail is the detail of an invocation status-change event. AWS's published examples
// carry no status-details; it is included here because it tells an undeliverable invocation
// from a failed one, and consumers must not depend on it being present.
type EventDetail struct {
	CommandID         string `json:"command-id"`
	DocumentName      string `json:"document-name"`
	InstanceID        string `json:"instance-id"`
	RequestedDateTime string `json:"requested-date-time"`
	Status            string `json:"status"`
	StatusDetails     string `json:"status-details,omitempty"`
}

// Event returns the status-change event for instanceID's invocation of commandID as it is now,
// encoded as AWS delivers it.
func (s *Server) Event(commandID, instanceID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invocation(commandID, instanceID)
	if inv == nil {
		return nil, fmt.Errorf("ssmtest: no invocation of command %s on %s", commandID, instanceID)
	}
	return json.Marshal(s.event(inv))
}

// Events returns every status-change event so far, in order: one for each status an
// invocation entered, as SSM sends them.
func (s *Server) Events() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.events...)
}

// recordEvent keeps the event for inv's current status, and when that status is final and
// the script ran, queues its output for the output bucket. The caller holds s.mu.
func (s *Server) recordEvent(inv *invocation) {
	b, err := json.Marshal(s.event(inv))
	if err == nil {
		s.events = append(s.events, b)
	}
	if bucket := inv.cmd.OutputS3BucketName; bucket != "" && terminal(inv.status) && inv.delivered() {
		for stream, body := range map[string]string{"stdout": inv.script.Stdout, "stderr": inv.script.Stderr} {
			if body != "" {
				s.uploads = append(s.uploads, upload{bucket: bucket, key: inv.outputKey(stream), body: []byte(body)})
			}
		}
	}
}

func (s *Server) event(inv *invocation) Event {
	c := inv.cmd
	resource := fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", Region, Account, inv.instanceID)
	if strings.HasPrefix(inv.instanceID, "mi-") {
		resource = fmt.Sprintf("arn:aws:ssm:%s:%s:managed-instance/%s", Region, Account, inv.instanceID)
	}
	details := inv.details
	if details == inv.status {
		details = ""
	}
	return Event{
		Version:    "0",
		ID:         newUUID(),
		DetailType: InvocationEventType,
		Source:     "aws.ssm",
		Account:    Account,
		Time:       s.now().UTC().Format(time.RFC3339),
		Region:     Region,
		Resources:  []string{resource},
		Detail: EventDetail{
			CommandID:         c.CommandId,
			DocumentName:      c.DocumentName,
			InstanceID:        inv.instanceID,
			RequestedDateTime: c.requested.UTC().Format("2006-01-02T15:04:05.000Z"),
			Status:            inv.status,
			StatusDetails:     details,
		},
	}
}
