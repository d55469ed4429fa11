import type { Request } from 'express';
import { routeLabel } from './http-metrics.middleware';

describe('routeLabel', () => {
  it('uses the matched pattern, never the raw path', () => {
    expect(routeLabel({ baseUrl: '', route: { path: '/api/v1/images/jobs/:id' }, path: '/api/v1/images/jobs/123' } as unknown as Request)).toBe('/api/v1/images/jobs/:id');
    expect(routeLabel({ baseUrl: '/admin/queues', route: { path: '/api/queues' } } as unknown as Request)).toBe('/admin/queues/api/queues');
  });

  it('groups what no route matched', () => {
    expect(routeLabel({ baseUrl: '', path: '/no/such/thing/42' } as unknown as Request)).toBe('unmatched');
    expect(routeLabel({ baseUrl: '/admin/queues', path: '/static/x.js' } as unknown as Request)).toBe('/admin/queues/*');
  });
});
