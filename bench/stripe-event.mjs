// The realistic Stripe event of about 1.4 KB that npm run bench and npm run bench:growth send and store.
export const template = {
  object: 'event',
  api_version: '2024-06-20',
  created: 1700000000,
  livemode: false,
  pending_webhooks: 1,
  request: { id: 'req_8a7d6f5e4c3b2a19', idempotency_key: 'a4f1c2d3-e5f6-4789-8abc-def012345678' },
  type: 'payment_intent.succeeded',
  data: {
    object: {
      id: 'pi_3OabcDEFghiJKL0m1NOPqrst',
      object: 'payment_intent',
      amount: 2000,
      amount_capturable: 0,
      amount_received: 2000,
      capture_method: 'automatic',
      client_secret: 'pi_3OabcDEFghiJKL0m1NOPqrst_secret_XyZ',
      confirmation_method: 'automatic',
      created: 1700000000,
      currency: 'usd',
      customer: 'cus_PqRsTuVwXyZ012',
      description: 'Order #1042 — 2 × Café Mocha',
      latest_charge: 'ch_3OabcDEFghiJKL0m1uVwXyZa',
      livemode: false,
      metadata: { order_id: '1042', cart: 'c_9f8e7d6c5b4a', channel: 'web', locale: 'fr-FR' },
      payment_method: 'pm_1OabcDEFghiJKL0mNOPqrSTu',
      payment_method_types: ['card'],
      receipt_email: 'ada@example.com',
      shipping: { name: 'Ada Lovelace', address: { line1: '12 St James Square', city: 'London', postal_code: 'SW1Y 4JH', country: 'GB' } },
      statement_descriptor_suffix: 'ORDER1042',
      status: 'succeeded'
    },
    previous_attributes: null
  }
}
