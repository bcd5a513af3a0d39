package task

import "time"

// Notification is published once for every terminal transition of a task (EventBridge on AWS,
// the log and the event stream locally). ID is derived from the task id and the status, so a
// consumer can drop a duplicate delivery by its ID.
type Notification struct {
	ID          string    `json:"id"`
	TaskID      string    `json:"taskId"`
	Owner       string    `json:"owner"`
	Status      Status    `json:"status"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"createdAt"`
	CompletedAt time.Time `json:"completedAt"`
	ScriptURL   string    `json:"scriptUrl"`
	Counts      Counts    `json:"counts"`
	Result      *Result   `json:"result,omitempty"`
}

// NotificationID is the id of the notification for a task reaching status s.
func NotificationID(taskID string, s Status) string {
	return taskID + ":" + string(s)
}

// NotificationFor builds the notification for a task that has just reached a terminal state.
func NotificationFor(t *Task) Notification {
	n := Notification{
		ID:        NotificationID(t.ID, t.Status),
		TaskID:    t.ID,
		Owner:     t.Owner,
		Status:    t.Status,
		Version:   t.Version,
		CreatedAt: t.CreatedAt,
		ScriptURL: t.Request.ScriptURL,
		Counts:    t.Counts,
		Result:    t.Result,
	}
	if t.CompletedAt != nil {
		n.CompletedAt = *t.CompletedAt
	}
	return n
}
