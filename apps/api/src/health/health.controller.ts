import { Controller, Get, OnModuleDestroy } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { ComfyUiClient, ComfyUiHttpClient } from '@app/comfyui';
import { Env } from '@app/config';
import { ComfyUiHealthIndicator, RedisHealthIndicator } from '@app/health';

@ApiTags('health')
@Controller('health')
export class HealthController implements OnModuleDestroy {
  private readonly comfy: ComfyUiClient[];

  constructor(
    env: Env,
    private readonly health: HealthCheckService,
    private readonly redis: RedisHealthIndicator,
    private readonly comfyui: ComfyUiHealthIndicator,
  ) {
    this.comfy = env.COMFYUI_URLS.map((u) => new ComfyUiHttpClient(u, { requestTimeoutMs: 800 }));
  }

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.redis.isHealthy(), () => this.comfyui.isHealthy(this.comfy)]);
  }

  @Get('live')
  live() {
    return { status: 'ok' };
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.comfy.map((c) => c.close()));
  }
}
