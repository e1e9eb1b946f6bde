-- Undo the 3.2.1 baseline: drop every table it created.
DROP TABLE positions;
DROP TABLE fills;
DROP TABLE orders;
DROP TABLE strategies;
DROP TABLE accounts;
