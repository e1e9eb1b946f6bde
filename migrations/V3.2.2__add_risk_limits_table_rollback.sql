DROP TABLE risk_limits;
