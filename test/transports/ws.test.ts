import { defineTransportSuite } from './suite.js';
import { wsHarness } from './ws-harness.js';

defineTransportSuite(wsHarness);
