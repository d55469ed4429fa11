import { Controller, Get, Header, Req, Res } from '@nestjs/common';
import { ApiHeader, ApiOkResponse, ApiOperation, ApiSecurity, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { HealthDto, LivenessDto, ReadinessDto } from './dto/health.dto';
import type { HealthCheckResult } from '@nestjs/terminus';
import type { Request, Response } from 'express';
import { Env } from '@app/config';
import { ComfyInstanceStatus, ComfyUiProbe, FleetMonitor, WorkerHeartbeat } from '@app/health';
import { WorkflowRegistry } from '@app/workflows';
import { version as packageVersion } from '../../../../package.json';
import { presentsAdminToken } from '../admin/admin-auth';
import { CompatibleHealth, compatibleHealth, imageModelStatus, publicHealth } from './health-view';
import { ReadinessService } from './readiness.service';

const ADMIN_HEADER = {
  name: 'Authorization',
  required: false,
  description: '`Bearer <ADMIN_TOKEN>` (or basic auth with it as the password) adds URLs, versions, worker ids and messages to the checks',
};

/**
 * Load-balancer probes. Liveness ("restart me?") touches nothing but this process; readiness
 * ("send me traffic?") runs the dependency checks, answers 503 with terminus's details when one is
 * down, and 503 `shutting_down` from the moment SIGTERM arrives. Anonymous callers see statuses
 * and counts; URLs, versions and worker ids only with ADMIN_TOKEN (the probes are public by path).
 */
@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly readiness: ReadinessService,
    private readonly fleet: FleetMonitor,
    private readonly probe: ComfyUiProbe,
    private readonly workflows: WorkflowRegistry,
    private readonly env: Env,
  ) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @ApiHeader(ADMIN_HEADER)
  @ApiOperation({
    summary: 'Health, compatible with the original service',
    description:
      '`status` `healthy` | `unhealthy`, `version`, `models.image` {name, type, framework, device, initialized} as the original ' +
      'service answered, then the readiness checks under `info` / `error` / `details`.',
  })
  @ApiSecurity('admin')
  @ApiOkResponse({ type: HealthDto, description: 'Every check is up (`status: "healthy"`)' })
  @ApiServiceUnavailableResponse({ type: HealthDto, description: 'A check is down, or the instance is shutting down (`status: "unhealthy"`)' })
  async check(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<CompatibleHealth> {
    const [ready, beats, instances] = await Promise.all([this.readiness.check(), this.heartbeats(), this.ownComfyUis()]);
    res.status(ready.httpStatus);
    const body = this.isAdmin(req) ? ready.body : publicHealth(ready.body);
    return compatibleHealth({ httpStatus: ready.httpStatus, body }, packageVersion, imageModelStatus(this.workflows.defaultId, beats, instances));
  }

  @Get('ready')
  @Header('Cache-Control', 'no-store')
  @ApiHeader(ADMIN_HEADER)
  @ApiOperation({ summary: 'Readiness: Redis, ComfyUI, GPU, workers, queue' })
  @ApiSecurity('admin')
  @ApiOkResponse({ type: ReadinessDto, description: 'Every check is up' })
  @ApiServiceUnavailableResponse({ type: ReadinessDto, description: 'A check is down (`status: "error"`), or the instance is shutting down (`status: "shutting_down"`)' })
  async ready(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<HealthCheckResult> {
    const { httpStatus, body } = await this.readiness.check();
    res.status(httpStatus);
    return this.isAdmin(req) ? body : publicHealth(body);
  }

  @Get('live')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Liveness: the process answers (no dependency is touched)' })
  @ApiOkResponse({ type: LivenessDto, description: 'The process is running' })
  live(): { status: 'ok'; uptime_s: number } {
    return { status: 'ok', uptime_s: Math.round(process.uptime()) };
  }

  private isAdmin(req: Request): boolean {
    return presentsAdminToken(req.header('authorization'), this.env.ADMIN_TOKEN);
  }

  /** Unreadable heartbeats (Redis away) mean no worker is known: the redis check says why. */
  private heartbeats(): Promise<WorkerHeartbeat[]> {
    return this.fleet.heartbeats().catch(() => []);
  }

  /** Only where readiness probes ComfyUI anyway (same cached call); an API-only node relies on heartbeats. */
  private ownComfyUis(): Promise<ComfyInstanceStatus[]> {
    const probes = this.env.HEALTH_READY_CHECKS.some((c) => c === 'comfyui' || c === 'gpu');
    return probes ? this.probe.instances() : Promise.resolve([]);
  }
}
