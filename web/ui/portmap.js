/*
 * web/ui/portmap.js - the port map of one public IP: its 65,536 ports
 * (0-65535) as a 256 x 256 grid, port p at row p >> 8, column p & 255,
 * one pixel each on a 256 x 256 <canvas> that CSS scales up without
 * smoothing.  A port is coloured by the internal host holding it (the
 * answer's hosts are sorted by ports held: the first PALETTE.length get
 * their own colour, the rest one shade); free ports are pale.  With one
 * destination bucket chosen, only its mappings are drawn, and the ports
 * outside the range its mappings draw from are greyed.
 *
 * It reads only what GET /api/v1/gateways/{ip}/ports answers (runs:
 * [first_port, count, host_index, destination_index], and for TCP a
 * fifth element, the state: an index into tcp_states[], or null when the
 * log does not know it at that moment; hosts[], destinations[]);
 * pages.js fetches it and shows the details of a port.
 * Exposes window.NatscopePortmap.
 */
(function () {
	'use strict';

	/* distinct colours, in the order of the hosts holding most ports */
	var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e',
		       '#17becf', '#e377c2', '#8c564b', '#bcbd22', '#393b79'];
	var OTHER = '#6b6b6b';	/* every host after the PALETTE's */
	var FREE = '#eef0f4';	/* a port nobody holds */
	var OUTSIDE = '#b8bdc7';	/* outside the chosen bucket's range */

	function rgb(hex) {
		var n = parseInt(hex.slice(1), 16);

		return [n >> 16 & 255, n >> 8 & 255, n & 255];
	}

	function colourOf(hostIndex) {
		return hostIndex < PALETTE.length ? PALETTE[hostIndex] : OTHER;
	}

	/* The runs of doc, validated (a malformed one is dropped), with
	 * the longest run's length for the lookups by port. */
	function runsOf(doc) {
		var hosts = Array.isArray(doc.hosts) ? doc.hosts.length : 0;
		var dests = Array.isArray(doc.destinations) ?
			doc.destinations.length : 0;
		var states = Array.isArray(doc.tcp_states) ?
			doc.tcp_states.length : 0;
		var runs = [], longest = 1;

		(Array.isArray(doc.runs) ? doc.runs : []).forEach(function (r) {
			if (!Array.isArray(r) || r.length < 4 || r.length > 5 ||
			    !(r[0] >= 0 && r[0] <= 65535) || !(r[1] >= 1) ||
			    !(r[2] >= 0 && r[2] < hosts) ||
			    !(r[3] >= 0 && r[3] < dests) ||
			    (r.length === 5 && r[4] !== null &&
			     !(r[4] >= 0 && r[4] < states)))
				return;
			runs.push(r);
			longest = Math.max(longest, r[1]);
		});
		return { runs: runs, longest: longest };
	}

	/* A map drawn on canvas.  dst: a destination index, or -1 for all. */
	function Portmap(canvas) {
		this.canvas = canvas;
		this.doc = null;
		this.runs = [];
		this.longest = 1;
		this.dst = -1;
		canvas.width = 256;
		canvas.height = 256;
	}

	Portmap.prototype.draw = function (doc, dst) {
		var ctx = this.canvas.getContext('2d');
		var img = ctx.createImageData(256, 256);
		var px = img.data, seen = new Uint8Array(65536);
		var free = rgb(FREE), outside = rgb(OUTSIDE), p, i, c;
		var r = runsOf(doc), range = null, colours = [];
		var hosts = doc.hosts || [];

		this.doc = doc;
		this.runs = r.runs;
		this.longest = r.longest;
		this.dst = dst;
		if (dst >= 0 && doc.destinations[dst] &&
		    Array.isArray(doc.destinations[dst].range))
			range = doc.destinations[dst].range;
		for (i = 0; i < hosts.length; i++)
			colours.push(rgb(colourOf(i)));
		for (p = 0; p < 65536; p++) {
			c = range && (p < range[0] || p > range[1]) ? outside : free;
			px[p * 4] = c[0];
			px[p * 4 + 1] = c[1];
			px[p * 4 + 2] = c[2];
			px[p * 4 + 3] = 255;
		}
		/* a port held by several hosts shows the first run's */
		this.runs.forEach(function (run) {
			var end = Math.min(run[0] + run[1], 65536), q;

			if (dst >= 0 && run[3] !== dst)
				return;
			c = colours[run[2]];
			for (q = run[0]; q < end; q++) {
				if (seen[q])
					continue;
				seen[q] = 1;
				px[q * 4] = c[0];
				px[q * 4 + 1] = c[1];
				px[q * 4 + 2] = c[2];
			}
		});
		ctx.putImageData(img, 0, 0);
	};

	/* The runs holding port p (toward the chosen bucket, if one is),
	 * as {host, destination} objects of the answer, with the TCP state
	 * (a name; null when not known then; undefined for other
	 * protocols). */
	Portmap.prototype.holders = function (p) {
		var runs = this.runs, lo = 0, hi = runs.length, out = [], i;

		while (lo < hi) {	/* the first run starting after p */
			var mid = (lo + hi) >> 1;

			if (runs[mid][0] <= p)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (i = lo - 1; i >= 0 && runs[i][0] > p - this.longest; i--) {
			if (runs[i][0] + runs[i][1] <= p ||
			    (this.dst >= 0 && runs[i][3] !== this.dst))
				continue;
			out.unshift({ host: this.doc.hosts[runs[i][2]],
				      host_index: runs[i][2],
				      destination: this.doc.destinations[
					      runs[i][3]],
				      state: runs[i].length < 5 ? undefined :
					      runs[i][4] === null ? null :
					      String(this.doc.tcp_states[
						      runs[i][4]]) });
		}
		return out;
	};

	/* The port under a point of the canvas (client coordinates). */
	Portmap.prototype.portAt = function (x, y) {
		var box = this.canvas.getBoundingClientRect();
		var col = Math.floor((x - box.left) / box.width * 256);
		var row = Math.floor((y - box.top) / box.height * 256);

		if (col < 0 || col > 255 || row < 0 || row > 255)
			return -1;
		return row * 256 + col;
	};

	window.NatscopePortmap = {
		create: function (canvas) { return new Portmap(canvas); },
		colourOf: colourOf,
		palette: PALETTE.slice(),
		other: OTHER, free: FREE, outside: OUTSIDE
	};
}());
