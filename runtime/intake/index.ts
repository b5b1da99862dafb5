/**
 * Intake: where a message enters — SMTP submission (smtp-server, AUTH and its throttle,
 * the limits against hostile clients), HTTP submission's JSON, the X-Petrel-* control
 * headers and the Received header. A message is acknowledged only once the spool holds it.
 */
export * from './submission-smtp.ts';
export * from './submission-limits.ts';
export * from './auth-throttle.ts';
export * from './headers.ts';
export * from './received.ts';
export * from './http-submission.ts';
export * from './dkim.ts';
export * from './dkim-signing.ts';
export * from './suppression.ts';
export * from './mime-parts.ts';
export * from './feedback.ts';
export * from './screen.ts';
export * from './inbound-auth.ts';
