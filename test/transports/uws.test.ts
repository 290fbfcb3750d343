import { defineTransportSuite } from './suite.js';
import { uwsHarness } from './uws-harness.js';

defineTransportSuite(uwsHarness);
