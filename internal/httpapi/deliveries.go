package httpapi

import (
	"net/http"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/task"
)

// listDeliveries is GET /tasks/{id}/deliveries: every attempt to deliver the task's webhook
// events, by event (in the order the events happened) and attempt, a page at a time. A task
// without notify has none.
func (h *handler) listDeliveries(w http.ResponseWriter, r *http.Request, caller task.Caller) {
	var p task.QueryParser
	limit, cursor := pageParams(&p, r.URL.Query())
	if err := p.Err(); err != nil {
		h.error(w, r, err)
		return
	}
	id := r.PathValue("id")
	page, err := h.cfg.Engine.Deliveries(r.Context(), caller, id, task.DeliveryQuery{Limit: limit, Cursor: cursor})
	if err != nil {
		h.error(w, r, err)
		return
	}
	list := api.DeliveryList{Items: make([]api.Delivery, 0, len(page.Deliveries))}
	for _, d := range page.Deliveries {
		list.Items = append(list.Items, renderDelivery(d))
	}
	if page.Next != "" {
		list.Next = nextURL(h.links(r).task(id)+"/deliveries", nil, limit, page.Next)
		w.Header().Set("Link", "<"+list.Next+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, list)
}
