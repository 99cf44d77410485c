package metrics

import "github.com/prometheus/client_golang/prometheus"

// RedisUpFunc registers phigate_redis_up: 1 while up() holds (Redis
// answers), 0 while the gateway counts Redis as down (issue 9.4). Register
// it once, only when Redis is configured; up runs on the scrape path and
// must be cheap (the guard's flag).
func (m *M) RedisUpFunc(up func() bool) {
	if !m.on() || up == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "phigate_redis_up",
		Help: "1 while Redis answers, 0 while it counts as down (the portal answers 503).",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}
