// SPDX-License-Identifier: MIT
// A long-running service that draws a token from each of Node.js's random
// streams every 100 ms and writes them to a console: crypto.randomBytes,
// crypto.randomUUID with and without its entropy cache, Math.random. The
// system test compares what clones of one saved guest print after the
// resume. Usage: node tokens.js [DEVICE [PREFIX]] (default /dev/ttyS0 and
// node: the streams are PREFIX-bytes, PREFIX-uuid-nocache, PREFIX-uuid,
// PREFIX-math). The provider and the preload come from how it is started
// (its OpenSSL configuration, NODE_OPTIONS), not from this program.
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const fd = fs.openSync(process.argv[2] || '/dev/ttyS0', 'a');
const p = process.argv[3] || 'node';
let seq = 0;
setInterval(() => {
	seq++;
	// one write per line group, so that other writers cannot cut a line
	fs.writeSync(fd,
		`TOK ${p}-bytes ${seq} ${crypto.randomBytes(16).toString('hex')}\n` +
		`TOK ${p}-uuid-nocache ${seq} ${crypto.randomUUID({ disableEntropyCache: true })}\n` +
		`TOK ${p}-uuid ${seq} ${crypto.randomUUID()}\n` +
		`TOK ${p}-math ${seq} ${Math.random()}\n`);
}, 100);
