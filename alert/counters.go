package alert

import (
	"container/list"
	"time"
)

// counters counts events per key in fixed windows that start at a key's
// first event. Keys are kept in the order their windows started, so expiry
// pops from the front (amortised O(1) per add), and when the cap is reached
// the oldest window is evicted.
type counters struct {
	window time.Duration
	max    int
	m      map[string]*list.Element
	order  *list.List // of *counter, oldest window first
}

type counter struct {
	key   string
	start time.Time
	n     int
}

func newCounters(window time.Duration, max int) *counters {
	return &counters{window: window, max: max, m: make(map[string]*list.Element), order: list.New()}
}

func (c *counters) expired(ct *counter, now time.Time) bool {
	return !now.Before(ct.start.Add(c.window))
}

// add counts one event for key at now and returns the count in key's
// current window, when that window started, and how many live counters
// were evicted to make room (0 or 1).
func (c *counters) add(key string, now time.Time) (n int, start time.Time, evicted uint64) {
	c.expire(now)
	if el, ok := c.m[key]; ok {
		ct := el.Value.(*counter)
		if !c.expired(ct, now) {
			ct.n++
			return ct.n, ct.start, 0
		}
		c.order.Remove(el)
		delete(c.m, key)
	}
	for len(c.m) >= c.max {
		front := c.order.Front()
		c.order.Remove(front)
		delete(c.m, front.Value.(*counter).key)
		evicted++
	}
	ct := &counter{key: key, start: now, n: 1}
	c.m[key] = c.order.PushBack(ct)
	return 1, now, evicted
}

// expire drops the counters whose window has ended. (If the clock steps
// back, a later window may sit behind an earlier one; it then waits for the
// front to expire, or for the cap, which is harmless.)
func (c *counters) expire(now time.Time) {
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		ct := el.Value.(*counter)
		if !c.expired(ct, now) {
			return
		}
		c.order.Remove(el)
		delete(c.m, ct.key)
	}
}

func (c *counters) len() int { return len(c.m) }
