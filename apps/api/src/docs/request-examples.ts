/** Request bodies shown in the document, one per kind of request a client makes. */
export const GENERATION_EXAMPLES = {
  'text-to-image': { summary: 'A prompt at the default size', value: { prompt: 'a lighthouse at dusk, oil painting', seed: 42 } },
  'aspect-ratio-variants': {
    summary: '16:9, three variants, WebP',
    value: { prompt: 'a story cover: a fox in a snowy forest', aspect_ratio: '16:9', num_images: 3, output_format: 'webp', output_quality: 80 },
  },
  img2img: { summary: 'Redraw an uploaded image', value: { prompt: 'the same scene at night', image: 'upl_3f9c2d0e8b7a4c1d9e6f5a4b3c2d1e0f', strength: 0.6 } },
  inpaint: {
    summary: 'Repaint the white part of a mask',
    value: { prompt: 'a red balloon in the sky', image: 'upl_3f9c2d0e8b7a4c1d9e6f5a4b3c2d1e0f', mask: 'upl_0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b' },
  },
};

export const JOB_EXAMPLES = {
  ...GENERATION_EXAMPLES,
  webhook: {
    summary: 'With a webhook and metadata',
    value: { prompt: 'a fox', webhook_url: 'https://app.example.com/hooks/images', webhook_events: ['succeeded', 'failed'], metadata: { story_id: 's-42' } },
  },
};
