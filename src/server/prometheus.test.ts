import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from './prometheus.js';

test('renders counters, gauges and cumulative histograms in the text format', () => {
  const registry = new Registry();
  const requests = registry.counter('offramp:request_success_total', 'Requests finished.');
  const running = registry.gauge('offramp:num_requests_running', 'Running.');
  const latency = registry.histogram('offramp:e2e_request_latency_seconds', 'End to end.', [1, 0.1]);
  requests.inc({ finished_reason: 'stop' });
  requests.inc({ finished_reason: 'stop' }, 2);
  requests.inc({ finished_reason: 'length' });
  running.set(4);
  latency.observe(0.05);
  latency.observe(0.5);
  latency.observe(5);
  assert.equal(
    registry.render(),
    [
      '# HELP offramp:request_success_total Requests finished.',
      '# TYPE offramp:request_success_total counter',
      'offramp:request_success_total{finished_reason="stop"} 3',
      'offramp:request_success_total{finished_reason="length"} 1',
      '# HELP offramp:num_requests_running Running.',
      '# TYPE offramp:num_requests_running gauge',
      'offramp:num_requests_running 4',
      '# HELP offramp:e2e_request_latency_seconds End to end.',
      '# TYPE offramp:e2e_request_latency_seconds histogram',
      'offramp:e2e_request_latency_seconds_bucket{le="0.1"} 1',
      'offramp:e2e_request_latency_seconds_bucket{le="1"} 2',
      'offramp:e2e_request_latency_seconds_bucket{le="+Inf"} 3',
      'offramp:e2e_request_latency_seconds_sum 5.55',
      'offramp:e2e_request_latency_seconds_count 3',
      '',
    ].join('\n'),
  );
});

test('escapes label values and refuses duplicate names and negative increments', () => {
  const registry = new Registry();
  const counter = registry.counter('x_total', 'X.');
  counter.inc({ model_name: 'a "b"\\c\nd' });
  assert.match(registry.render(), /^x_total\{model_name="a \\"b\\"\\\\c\\nd"\} 1$/m);
  assert.throws(() => registry.gauge('x_total', 'again'), /twice/);
  assert.throws(() => counter.inc({}, -1), /only goes up/);
});
