package gateway

// SMTPInData reports how many DATA bodies the gateway is taking (tests
// wait for it before they stop the gateway).
func SMTPInData(g *Gateway) int {
	g.drain.mu.Lock()
	defer g.drain.mu.Unlock()
	return g.drain.inData
}
