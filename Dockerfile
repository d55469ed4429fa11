# One image for the three apps; the compose file picks the command.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The npm workspace (the client package) must be there for npm ci to follow the lock file.
COPY libs/client/package.json libs/client/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/workflows ./workflows
COPY --from=build /app/scripts ./scripts
COPY package.json ./
USER node
EXPOSE 8000
CMD ["node", "scripts/run.js", "api"]
