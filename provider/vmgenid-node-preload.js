// SPDX-License-Identifier: MIT
// libvmgenid for Node.js, with no code change: preload this file
//   NODE_OPTIONS=--require=/usr/share/libvmgenid/vmgenid-node-preload.js
// once the OpenSSL provider is set up (vmgenid-provider(7)), so that every
// draw below goes through OpenSSL's DRBG, which reseeds on every VM
// restore, clone and fork.
//
// - Math.random: V8's generator is seeded once per context and cannot be
//   reseeded from JavaScript; it becomes 53 bits from crypto.randomFillSync
//   (about a microsecond a call instead of a few nanoseconds).
// - crypto.randomUUID: Node keeps 128 UUIDs' worth of random bytes in a
//   cache that a restore duplicates; every call skips it.
//
// What it leaves alone: random bytes a program already holds (its own
// caches, pools, pre-drawn nonces), and Node built without OpenSSL 3.
'use strict';

const crypto = require('crypto');

const words = new Uint32Array(2);

function random() {
	crypto.randomFillSync(words);
	// 53 bits: 27 from the first word, 26 from the second.
	return ((words[0] >>> 5) * 67108864 + (words[1] >>> 6)) /
		9007199254740992;
}
Object.defineProperty(Math, 'random', {
	value: random, writable: true, configurable: true, enumerable: false,
});

const randomUUID = crypto.randomUUID;
function uncachedUUID(options) {
	return randomUUID({ ...options, disableEntropyCache: true });
}
crypto.randomUUID = uncachedUUID;
const web = crypto.webcrypto;
if (web && typeof web.randomUUID === 'function') {
	web.randomUUID = function () {
		return randomUUID({ disableEntropyCache: true });
	};
}
