// SPDX-License-Identifier: MIT
// A long-running service that draws a token from each of Node.js's random
// streams every 100 ms and writes them to a console: crypto.randomBytes,
// crypto.randomUUID with and without its entropy cache, Math.random. The
// system test compares what clones of one saved guest print after the
// resume. Usage: node tokens.js DEVICE (default /dev/ttyS0).
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const fd = fs.openSync(process.argv[2] || '/dev/ttyS0', 'a');
let seq = 0;
setInterval(() => {
	seq++;
	// one write per line group, so that other writers cannot cut a line
	fs.writeSync(fd,
		`TOK node-bytes ${seq} ${crypto.randomBytes(16).toString('hex')}\n` +
		`TOK node-uuid-nocache ${seq} ${crypto.randomUUID({ disableEntropyCache: true })}\n` +
		`TOK node-uuid ${seq} ${crypto.randomUUID()}\n` +
		`TOK node-math ${seq} ${Math.random()}\n`);
}, 100);
