#!/usr/bin/env node
// Entry point installed as `tokengate`. The compiled CLI lives in dist/ (built by
// `npm ci` through the `prepare` script, and by the Dockerfile's build stage).
import '../dist/cli.js';
