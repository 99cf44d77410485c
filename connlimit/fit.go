package connlimit

// FitFDLimit returns max lowered, if need be, so that max connections plus
// reserve other descriptors (database, logs, the other listeners, outbound
// connections) stay below the process's file-descriptor limit: a server
// that runs out of descriptors fails every accept and every file open, for
// everyone. lowered says whether it had to; with an unknown limit max is
// returned as it is.
func FitFDLimit(max, reserve int) (n int, lowered bool) {
	return fit(max, reserve, FDLimit())
}

func fit(max, reserve, limit int) (int, bool) {
	if limit <= 0 {
		return max, false
	}
	room := limit - reserve
	if room < 1 {
		room = 1
	}
	if max <= 0 || max > room {
		return room, true
	}
	return max, false
}
